"""ConnectFunction: ``GET /v1/banks`` and the ``/v1/connections`` resource.

The user is the JWT ``sub`` set by the HTTP API JWT authorizer; no route takes a user id from the path or body.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from aisp.api import not_implemented, register_error_handlers
from aisp.logic.banks import list_banks
from aisp.models.api import BankSummary
from aisp.observability import logger, metrics, tracer

app = APIGatewayHttpResolver(enable_validation=True)
register_error_handlers(app)


@app.get("/v1/banks")
def handle_list_banks() -> list[BankSummary]:
    """List the BPCE establishments and what each supports."""
    return list_banks()


def _not_yet() -> Response[str]:
    return not_implemented(app, "connections arrive in issue 4")


@app.post("/v1/connections")
def handle_create_connection() -> Response[str]:
    """Start the OAuth journey (issue 4)."""
    return _not_yet()


@app.get("/v1/connections")
def handle_list_connections() -> Response[str]:
    """List the user's connections (issue 4)."""
    return _not_yet()


@app.delete("/v1/connections/<bank_code>")
def handle_delete_connection(bank_code: str) -> Response[str]:
    """Forget a connection's tokens (issue 4)."""
    return _not_yet()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
