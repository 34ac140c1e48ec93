"""Consent submission over the in-memory stack with fake banks: forwarded as STET Access, stored with a conditional
write, the bank's 400 as a validation error. Idempotency-Key replays: tests/aws/test_idempotent_writes.py."""

from __future__ import annotations

import json

import pytest

from aisp import errors
from aisp.models.connection import ConsentSnapshot
from tests.consent_calls import IBANS, MARC, PSU, consent_request, submit


@pytest.fixture
def marc(active_connection):
    return active_connection(MARC, "13807")


def test_the_consent_goes_to_the_bank_and_is_stored_on_the_connection(account_services, services, marc, account_bank):
    response = submit(account_services)

    (call,) = account_bank.of("put_consents")
    # The bank is asked for exactly what the user requested (stamped with the submission's time)
    sent = call.kwargs["consent"]
    assert isinstance(sent, ConsentSnapshot) and call.kwargs["psu"] is PSU
    assert sent.model_dump(exclude={"updated_at"}) == consent_request().model_dump()
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
    gateway.put_consents("13807", access_token="t", consent=consent_request(), psu=PSU)

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
        submit(account_services)

    assert raised.value.details["field"] == "balances/transactions"
    assert services.connections.find(MARC, "13807").consent is None


def test_a_bank_outage_stores_nothing(account_services, services, marc, account_bank):
    account_bank.fail("put_consents", errors.BankUnavailableError("503", status=503, bank_code="13807"))

    with pytest.raises(errors.BankUnavailableError):
        submit(account_services)
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

    response = submit(account_services)

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
        submit(account_services)
    assert services.connections.find(MARC, "13807").consent is None
