"""ConsentsFunction: ``PUT /v1/connections/{bank_code}/consent``, forwarded to the bank's ``PUT /consents``.

The user is the JWT ``sub``; the PSU context (``PSU-IP-Address`` = the caller's source IP, the other ``PSU-*`` from
the app's own headers) goes to the bank. Idempotent on an ``Idempotency-Key`` header (Powertools idempotency).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from aisp import audit, wiring
from aisp.api import current_user, psu_from_event, register_error_handlers
from aisp.api.headers import no_store
from aisp.api.openapi import BANK_ERRORS, responses
from aisp.api.params import BankCodePath, IdempotencyKeyHeader
from aisp.logic.consents import submit_consent
from aisp.models.api import SubmitConsentRequest, SubmitConsentResponse
from aisp.observability import logger, metrics, tracer

app = APIGatewayHttpResolver(enable_validation=True)
register_error_handlers(app)
app.use([no_store])


@app.put(
    "/v1/connections/<bank_code>/consent",
    summary="Submit the user's consent",
    description="Forwarded to the bank's PUT /consents; replaces the previous consent. IBANs must be accounts the "
    "user holds at this bank (GET .../accounts lists them).",
    operation_id="submitConsent",
    tags=["consents"],
    responses=responses((*BANK_ERRORS, 422), description="The consent now in force"),
)
def handle_submit_consent(
    bank_code: BankCodePath, request: SubmitConsentRequest, idempotency_key: IdempotencyKeyHeader = None
) -> SubmitConsentResponse:
    """Send the consent to the bank; 200 with the stored consent."""
    return submit_consent(
        user_id=current_user(app.current_event),
        bank_code=bank_code,
        request=request,
        psu=psu_from_event(app.current_event),
        idempotency_key=idempotency_key,
        lambda_context=app.lambda_context,
        services=wiring.account_services(),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
@audit.invocation
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
