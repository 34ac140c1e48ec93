"""ConsentsFunction with the events/consents payloads: body validation (IBAN format, country length, mod-97),
the stored consent in the answer, a malformed Idempotency-Key, and the bank's refusal as validation_error (replay and
reuse of a key: tests/aws/test_idempotent_writes.py)."""

from __future__ import annotations

import json

import pytest

from aisp import errors
from functions.consents import app as consents_app

IBANS = ["FR7613807008043001965405158", "FR7613807008043001965405255", "FR7613807008043001965405352"]


@pytest.fixture
def marc(account_wired, active_connection):
    return active_connection("user-marc", "13807")


def _call(event, lambda_context):
    response = consents_app.lambda_handler(event, lambda_context)
    return response, json.loads(response["body"])


def _with_body(event, body):
    event["body"] = json.dumps(body) if not isinstance(body, str) else body
    return event


def test_the_consent_is_forwarded_and_answered(marc, account_bank, load_event, lambda_context):
    response, body = _call(load_event("consents/submit_consent.json"), lambda_context)

    assert response["statusCode"] == 200, body
    assert response["headers"]["Cache-Control"] == "no-store"
    assert response["headers"]["X-Request-ID"] == "req-put-consent-13807"  # the API's request id reaches the app
    assert body["bank_code"] == "13807" and body["connection_id"] == marc.connection_id
    assert body["consent"]["balances"] == IBANS and body["consent"]["transactions"] == IBANS[:2]
    assert body["consent"]["psu_identity"] is True and body["consent"]["trusted_beneficiaries"] is True
    (call,) = account_bank.of("put_consents")
    assert call.kwargs["psu"].ip_address == "203.0.113.10" and call.kwargs["psu"].http_method == "PUT"


def test_ibans_are_normalised_and_deduplicated(marc, account_bank, load_event, lambda_context):
    event = _with_body(
        load_event("consents/submit_consent.json"),
        {
            "balances": ["fr76 1380 7008 0430 0196 5405 158", IBANS[0]],
            "transactions": [],
            "psu_identity": False,
            "trusted_beneficiaries": False,
        },
    )

    response, body = _call(event, lambda_context)

    assert response["statusCode"] == 200
    assert body["consent"]["balances"] == [IBANS[0]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"balances": ["FR7613807008043001965405159"], "transactions": []}, "balances"),  # check digits
        ({"balances": [], "transactions": ["FR76138070080430019654051"]}, "transactions"),  # too short for FR
        ({"balances": [], "transactions": ["XX7613807008043001965405158"]}, "transactions"),  # no such country
        ({"balances": [IBANS[0]] * 101, "transactions": []}, "balances"),  # more than 100
        ({"balances": [], "transactions": [], "user_id": "user-eve"}, "user_id"),  # the user is the JWT sub only
        ({"balances": "FR7613807008043001965405158", "transactions": []}, "balances"),
    ],
)
def test_invalid_bodies_are_validation_errors_that_do_not_echo_ibans(
    marc, account_bank, load_event, lambda_context, body, field
):
    event = _with_body(
        load_event("consents/submit_consent.json"), {"psu_identity": False, "trusted_beneficiaries": False, **body}
    )

    response, problem = _call(event, lambda_context)

    assert response["statusCode"] == 400 and problem["code"] == "validation_error"
    assert any(field in error["field"] for error in problem["errors"])
    assert "7613807008043001965405" not in response["body"]
    assert account_bank.calls == []


@pytest.mark.parametrize("raw", ["", "not json", "[]", '{"balances": []}'])
def test_missing_or_malformed_bodies_are_validation_errors(marc, load_event, lambda_context, raw):
    response, problem = _call(_with_body(load_event("consents/submit_consent.json"), raw), lambda_context)

    assert response["statusCode"] == 400 and problem["code"] == "validation_error"


def test_the_event_with_a_bad_iban(marc, load_event, lambda_context):
    response, problem = _call(load_event("consents/submit_consent_invalid_iban.json"), lambda_context)

    assert response["statusCode"] == 400 and problem["code"] == "validation_error"


def test_no_jwt_is_unauthenticated(account_wired, load_event, lambda_context):
    response, problem = _call(load_event("consents/submit_consent_no_jwt.json"), lambda_context)

    assert response["statusCode"] == 401 and problem["code"] == "unauthenticated"


def test_an_account_the_user_does_not_hold_is_a_validation_error(marc, account_bank, load_event, lambda_context):
    account_bank.fail(
        "put_consents", errors.BankClientError("bank rejected the request", status=400, bank_code="13807")
    )

    response, problem = _call(load_event("consents/submit_consent.json"), lambda_context)

    assert response["statusCode"] == 400 and problem["code"] == "validation_error"
    assert problem["errors"] == [{"field": "balances/transactions", "message": problem["detail"]}]


def test_an_unknown_bank_and_a_missing_connection(account_wired, load_event, lambda_context):
    event = load_event("consents/submit_consent.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/connections/99999/consent"
    response, problem = _call(event, lambda_context)
    assert response["statusCode"] == 404 and problem["code"] == "bank_not_found"

    response, problem = _call(load_event("consents/submit_consent.json"), lambda_context)
    assert response["statusCode"] == 404 and problem["code"] == "connection_not_found"


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "é"])
def test_a_malformed_idempotency_key_is_a_validation_error(marc, account_bank, load_event, lambda_context, key):
    event = load_event("consents/submit_consent.json")
    event["headers"]["idempotency-key"] = key

    response, problem = _call(event, lambda_context)

    assert response["statusCode"] == 400 and problem["code"] == "validation_error"
    assert account_bank.calls == []
