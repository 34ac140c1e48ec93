"""ConsentsFunction: ``PUT /v1/connections/{bank_code}/consent``, forwarded to the bank's ``PUT /consents``."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from aisp.api import not_implemented, register_error_handlers
from aisp.observability import logger, metrics, tracer

app = APIGatewayHttpResolver(enable_validation=True)
register_error_handlers(app)


@app.put("/v1/connections/<bank_code>/consent")
def handle_submit_consent(bank_code: str) -> Response[str]:
    """Consent submission lands with issue 5."""
    return not_implemented(app, "consent arrives in issue 5")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
