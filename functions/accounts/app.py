"""AccountsFunction: on-demand account queries under ``/v1``."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from aisp.api import not_implemented, register_error_handlers
from aisp.observability import logger, metrics, tracer

app = APIGatewayHttpResolver(enable_validation=True)
register_error_handlers(app)


def _not_yet() -> Response[str]:
    return not_implemented(app, "account queries arrive in issue 5")


@app.get("/v1/accounts")
def handle_list_all_accounts() -> Response[str]:
    """Accounts across every active connection (issue 5)."""
    return _not_yet()


@app.get("/v1/connections/<bank_code>/accounts")
def handle_list_accounts(bank_code: str) -> Response[str]:
    """Accounts of one connection (issue 5)."""
    return _not_yet()


@app.get("/v1/connections/<bank_code>/accounts/<account_id>/balances")
def handle_get_balances(bank_code: str, account_id: str) -> Response[str]:
    """Balances of one account (issue 5)."""
    return _not_yet()


@app.get("/v1/connections/<bank_code>/accounts/<account_id>/transactions")
def handle_get_transactions(bank_code: str, account_id: str) -> Response[str]:
    """Transactions of one account (issue 5)."""
    return _not_yet()


@app.get("/v1/connections/<bank_code>/trusted-beneficiaries")
def handle_get_trusted_beneficiaries(bank_code: str) -> Response[str]:
    """Trusted beneficiaries (issue 5)."""
    return _not_yet()


@app.get("/v1/connections/<bank_code>/identity")
def handle_get_identity(bank_code: str) -> Response[str]:
    """The PSU's identity (issue 5)."""
    return _not_yet()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
