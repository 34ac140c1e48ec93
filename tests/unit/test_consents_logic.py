"""Consent submission over moto with fake banks: forwarded as STET Access, stored with a conditional write, the bank's
400 as a validation error, and Powertools idempotency on the Idempotency-Key (one bank call, same answer)."""

from __future__ import annotations

import json

import pytest

from aisp import errors
from aisp.logic import consents
from aisp.models.api import SubmitConsentRequest
from aisp.models.connection import ConsentSnapshot
from aisp.models.psu import PsuInfo
from tests.conftest import FakeLambdaContext

MARC = "user-marc"
IBANS = ["FR7613807008043001965405158", "FR7613807008043001965405255"]
PSU = PsuInfo(ip_address="203.0.113.10", http_method="PUT")


@pytest.fixture
def marc(active_connection):
    return active_connection(MARC, "13807")


def _request(balances=IBANS, transactions=IBANS[:1], **flags):
    return SubmitConsentRequest(
        balances=balances,
        transactions=transactions,
        psu_identity=flags.get("psu_identity", True),
        trusted_beneficiaries=flags.get("trusted_beneficiaries", False),
    )


def _submit(account_services, request=None, *, user_id=MARC, key=None, lambda_context=None):
    return consents.submit_consent(
        user_id=user_id,
        bank_code="13807",
        request=request or _request(),
        psu=PSU,
        idempotency_key=key,
        lambda_context=lambda_context or FakeLambdaContext(),
        services=account_services,
    )


def test_the_consent_goes_to_the_bank_and_is_stored_on_the_connection(account_services, services, marc, account_bank):
    response = _submit(account_services)

    (call,) = account_bank.of("put_consents")
    # The bank is asked for exactly what the user requested (stamped with the submission's time)
    sent = call.kwargs["consent"]
    assert isinstance(sent, ConsentSnapshot) and call.kwargs["psu"] is PSU
    assert sent.model_dump(exclude={"updated_at"}) == _request().model_dump()
    assert response.bank_code == "13807" and response.connection_id == marc.connection_id
    assert response.consent.balances == IBANS and response.consent.transactions == IBANS[:1]
    stored = services.connections.find(MARC, "13807")
    assert stored.consent == response.consent
    assert stored.version == marc.version + 1


def test_the_stet_body_is_the_access_object(account_services, marc, account_bank):
    from aisp.stet.gateway import StetAccountGateway

    sent = {}

    class Client:
        def put_consents(self, access_token, body, psu):
            sent.update(json.loads(body.to_json_bytes()), psu=psu.to_headers())

    class Clients:
        def get(self, bank_code):
            return Client()

    gateway = StetAccountGateway(Clients)
    gateway.put_consents("13807", access_token="t", consent=_request(), psu=PSU)

    assert sent == {
        "balances": [{"iban": IBANS[0]}, {"iban": IBANS[1]}],
        "transactions": [{"iban": IBANS[0]}],
        "trustedBeneficiaries": False,
        "psuIdentity": True,
        "psu": {"PSU-IP-Address": "203.0.113.10", "PSU-HTTP-Method": "PUT"},
    }


def test_the_banks_400_is_a_validation_error_and_nothing_is_stored(account_services, services, marc, account_bank):
    account_bank.fail("put_consents", errors.BankClientError("400", status=400, bank_code="13807"))

    with pytest.raises(errors.InvalidRequestError) as raised:
        _submit(account_services)

    assert raised.value.details["field"] == "balances/transactions"
    assert services.connections.find(MARC, "13807").consent is None


def test_a_bank_outage_stores_nothing(account_services, services, marc, account_bank):
    account_bank.fail("put_consents", errors.BankUnavailableError("503", status=503, bank_code="13807"))

    with pytest.raises(errors.BankUnavailableError):
        _submit(account_services)
    assert services.connections.find(MARC, "13807").consent is None


def test_a_token_refresh_during_the_submission_does_not_lose_the_consent(
    account_services, services, marc, account_bank, clock
):
    # Given the refresher storing new tokens while the bank processes the consent (the version moves)
    from datetime import timedelta

    from pydantic import SecretStr

    from aisp.models.connection import TokenPair

    original = account_bank.put_consents

    def concurrently_refreshed(bank_code, **kwargs):
        original(bank_code, **kwargs)
        current, _ = services.connections.get_with_tokens(MARC, "13807")
        services.connections.store_refreshed_tokens(
            current,
            tokens=TokenPair(access_token=SecretStr("access-2"), refresh_token=SecretStr("refresh-1")),
            access_expires_at=clock.now() + timedelta(hours=1),
            now=clock.now(),
        )

    account_bank.put_consents = concurrently_refreshed

    response = _submit(account_services)

    # Then the consent is stored on the new version and the new tokens are kept
    stored, tokens = services.connections.get_with_tokens(MARC, "13807")
    assert stored.consent == response.consent
    assert tokens.access_token.get_secret_value() == "access-2"


def test_a_connection_deleted_during_the_submission_is_a_conflict(
    account_services, services, marc, account_bank, clock
):
    from datetime import timedelta

    original = account_bank.put_consents

    def deleted_meanwhile(bank_code, **kwargs):
        original(bank_code, **kwargs)
        current = services.connections.find(MARC, "13807")
        services.connections.revoke(current, now=clock.now(), purge_at=clock.now() + timedelta(days=1))

    account_bank.put_consents = deleted_meanwhile

    with pytest.raises(errors.ConflictError):
        _submit(account_services)
    assert services.connections.find(MARC, "13807").consent is None
