"""``Idempotency-Key`` on the API's writes: Powertools idempotency on its DynamoDB table (moto), through the consent
use case and the connect and consents handlers. The use cases' other ports are the in-memory stack (tests/use_cases.py):
one bank call per key, the same answer replayed, another body refused, keys per user, a failure retried."""

from __future__ import annotations

import dataclasses
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from aisp import errors, wiring
from functions.connect import app as connect_app
from functions.consents import app as consents_app
from tests.conftest import IDEMPOTENCY_TABLE
from tests.consent_calls import IBANS, MARC, consent_request, submit

# First: the aws fixture's wiring.reset() must come before the stack is given to the wiring.
pytestmark = pytest.mark.usefixtures("aws")

KEY = "0b6f8f9e-3c1d-4f7a-9d55-6a1e2f3b4c5d"


@pytest.fixture
def marc(account_wired, active_connection):
    return active_connection(MARC, "13807")


def _json(response):
    return json.loads(response["body"])


def _put_consent(event, lambda_context):
    response = consents_app.lambda_handler(event, lambda_context)
    return response, _json(response)


def _with_body(event, body):
    event["body"] = json.dumps(body)
    return event


# --- the consent use case ----------------------------------------------------------------------------------------


def test_without_a_key_no_idempotency_store_is_built(account_services, marc, idempotency):
    built = []
    connections = dataclasses.replace(
        account_services.connections, idempotency=lambda: built.append(1) or wiring.idempotency_store()
    )
    services = dataclasses.replace(account_services, connections=connections)

    submit(services)
    submit(services)

    assert built == []
    assert submit(services, key="key-1").consent == submit(services).consent
    assert built == [1]


def test_the_same_key_replays_the_first_answer_with_one_bank_call(
    account_services, marc, account_bank, idempotency, lambda_context
):
    first = submit(account_services, key="key-1", lambda_context=lambda_context)
    second = submit(account_services, key="key-1", lambda_context=lambda_context)

    assert second == first
    assert len(account_bank.of("put_consents")) == 1


def test_the_same_key_with_another_body_is_refused(account_services, marc, account_bank, idempotency):
    submit(account_services, key="key-1")

    with pytest.raises(errors.IdempotencyKeyReusedError):
        submit(account_services, consent_request(transactions=IBANS), key="key-1")
    assert len(account_bank.of("put_consents")) == 1


def test_keys_are_per_user(account_services, marc, active_connection, account_bank, idempotency):
    active_connection("user-eve", "13807")

    submit(account_services, key="shared-key")
    submit(account_services, key="shared-key", user_id="user-eve")

    assert len(account_bank.of("put_consents")) == 2


def test_a_retry_while_the_first_runs_is_in_progress(account_services, marc, account_bank, idempotency):
    original = account_bank.put_consents
    seen = []

    def client_retries_meanwhile(bank_code, **kwargs):
        with pytest.raises(errors.RequestInProgressError):
            submit(account_services, key="key-1")
        seen.append("retry refused")
        original(bank_code, **kwargs)

    account_bank.put_consents = client_retries_meanwhile

    submit(account_services, key="key-1")

    assert seen == ["retry refused"]


def test_a_failed_submission_can_be_retried_with_the_same_key(account_services, marc, account_bank, idempotency):
    account_bank.fail("put_consents", errors.BankUnavailableError("503", status=503, bank_code="13807"))
    with pytest.raises(errors.BankUnavailableError):
        submit(account_services, key="key-1")

    submit(account_services, key="key-1")

    assert len(account_bank.of("put_consents")) == 2


# --- the consents and connect handlers ----------------------------------------------------------------------------


def test_a_keyed_consent_replays_and_another_body_is_422(marc, account_bank, load_event, lambda_context, idempotency):
    first, first_body = _put_consent(load_event("consents/submit_consent.json"), lambda_context)
    again, again_body = _put_consent(load_event("consents/submit_consent.json"), lambda_context)

    assert first["statusCode"] == again["statusCode"] == 200
    assert again_body == first_body
    assert len(account_bank.of("put_consents")) == 1

    changed = load_event("consents/submit_consent.json")
    body = json.loads(changed["body"])
    body["transactions"] = body["balances"]
    response, problem = _put_consent(_with_body(changed, body), lambda_context)

    assert response["statusCode"] == 422 and problem["code"] == "idempotency_key_reused"
    assert len(account_bank.of("put_consents")) == 1


def _keyed(event, key=KEY, **body):
    event["headers"]["idempotency-key"] = key
    event["body"] = json.dumps({**json.loads(event["body"]), **body})
    return event


def test_a_keyed_create_replays_its_login_link_which_is_sealed_at_rest(
    wired, aws, memory_stack, load_event, lambda_context, idempotency
):
    # Given Marc's POST /v1/connections with an Idempotency-Key
    event = _keyed(load_event("connect/create_connection.json"))

    # When his app sends it again (the first answer was lost)
    first = connect_app.lambda_handler(event, lambda_context)
    again = connect_app.lambda_handler(event, lambda_context)

    # Then both are the same 201, login link included, and only one login journey was started
    assert first["statusCode"] == again["statusCode"] == 201
    assert _json(again) == _json(first)
    assert len(memory_stack.raw_states()) == 1
    # And the idempotency record holds the answer sealed: neither the link nor its state can be read there
    (record,) = aws.dynamodb.scan(TableName=IDEMPOTENCY_TABLE)["Items"]
    state = parse_qs(urlsplit(_json(first)["authorization_url"]).query)["state"][0]
    assert state not in json.dumps(record) and "authorization_url" not in json.dumps(record)


def test_a_create_key_with_another_body_is_422_and_keys_are_per_user(
    wired, aws, memory_stack, load_event, lambda_context, idempotency
):
    # Given a connection started with a key
    first = connect_app.lambda_handler(_keyed(load_event("connect/create_connection.json")), lambda_context)

    # When the same key comes with another bank, then from another user
    reused = connect_app.lambda_handler(
        _keyed(load_event("connect/create_connection.json"), bank_code="17515"), lambda_context
    )
    as_eve = _keyed(load_event("connect/create_connection.json"))
    as_eve["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "user-eve"
    eves = connect_app.lambda_handler(as_eve, lambda_context)

    # Then the first is refused as a reused key, the second is Eve's own journey
    assert (reused["statusCode"], _json(reused)["code"]) == (422, "idempotency_key_reused")
    assert reused["headers"]["Content-Type"] == "application/problem+json"
    assert eves["statusCode"] == 201 and _json(eves)["connection_id"] != _json(first)["connection_id"]
    assert len(memory_stack.raw_states()) == 2
