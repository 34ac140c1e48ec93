"""OAuthCallbackFunction: ``GET /oauth/callback``, the bank's browser redirect (no JWT)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from aisp.api import not_implemented, register_error_handlers
from aisp.observability import logger, metrics, tracer

app = APIGatewayHttpResolver(enable_validation=True)
register_error_handlers(app)


@app.get("/oauth/callback")
def handle_oauth_callback() -> Response[str]:
    """Code exchange and token storage land with issue 4."""
    return not_implemented(app, "the callback arrives in issue 4")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
