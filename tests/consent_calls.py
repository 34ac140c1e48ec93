"""The consent use case as its tests call it (tests/unit and tests/aws): Marc's IBANs, a request, one submission."""

from __future__ import annotations

from typing import Any

from aisp.logic import consents
from aisp.models.api import SubmitConsentRequest
from aisp.models.psu import PsuInfo
from tests.conftest import FakeLambdaContext

MARC = "user-marc"
IBANS = ["FR7613807008043001965405158", "FR7613807008043001965405255"]
PSU = PsuInfo(ip_address="203.0.113.10", http_method="PUT")


def consent_request(balances=IBANS, transactions=IBANS[:1], **flags: bool) -> SubmitConsentRequest:
    return SubmitConsentRequest(
        balances=balances,
        transactions=transactions,
        psu_identity=flags.get("psu_identity", True),
        trusted_beneficiaries=flags.get("trusted_beneficiaries", False),
    )


def submit(account_services, request=None, *, user_id=MARC, key=None, lambda_context=None) -> Any:
    """``PUT /v1/connections/13807/consent`` for ``user_id`` (Marc), keyed by ``key`` when given."""
    return consents.submit_consent(
        user_id=user_id,
        bank_code="13807",
        request=request or consent_request(),
        psu=PSU,
        idempotency_key=key,
        lambda_context=lambda_context or FakeLambdaContext(),
        services=account_services,
    )
