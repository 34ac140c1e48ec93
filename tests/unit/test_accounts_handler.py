"""AccountsFunction with the events/accounts payloads: routes, validation, the PSU context from the request, the
problem+json error codes (with Retry-After), 501 without a bank call, and cursors across calls."""

from __future__ import annotations

import json

import pytest

from aisp import errors
from functions.accounts import app as accounts_app
from tests.fakes import stet_account, stet_transaction

ACCOUNT = "038-CPT30019654051"
IBAN = "FR7613807008043001965405158"


@pytest.fixture
def marc(account_wired, active_connection, account_bank):
    connection = active_connection("user-marc", "13807")
    account_bank.accounts["13807"] = {"accounts": [stet_account(ACCOUNT, IBAN)], "connectedPsu": "MALLOW MARC"}
    account_bank.balances[("13807", ACCOUNT)] = {
        "balances": [
            {"balanceType": "CLBD", "name": "Solde", "balanceAmount": {"amount": "4179.95", "currency": "EUR"}}
        ]
    }
    account_bank.transactions[("13807", ACCOUNT)] = [stet_transaction(n) for n in range(150)]
    return connection


def _call(event, lambda_context):
    response = accounts_app.lambda_handler(event, lambda_context)
    return response, json.loads(response["body"]) if response.get("body") else None


def _with_query(event, **query):
    from urllib.parse import urlencode

    event["queryStringParameters"] = query
    event["rawQueryString"] = urlencode(query)
    return event


def _problem(response, body, status, code):
    assert response["statusCode"] == status, body
    assert response["headers"]["Content-Type"] == "application/problem+json"
    assert body["code"] == code
    return body


def test_accounts_route_answers_the_normalized_accounts(marc, account_bank, load_event, lambda_context):
    response, body = _call(load_event("accounts/list_accounts.json"), lambda_context)

    assert response["statusCode"] == 200
    assert response["headers"]["Cache-Control"] == "no-store"
    assert response["headers"]["X-Request-ID"] == "req-get-accounts-13807"  # the API's request id reaches the app
    assert body["bank_code"] == "13807" and body["connected_psu"] == "MALLOW MARC"
    (account,) = body["accounts"]
    assert account["account_id"] == ACCOUNT and account["iban"] == IBAN
    assert account["links"] == {"balances": True, "transactions": True}
    assert account["balances"][0]["amount"] == "4179.95"


def test_the_psu_context_is_the_callers_ip_and_its_own_headers_only(marc, account_bank, load_event, lambda_context):
    _call(load_event("accounts/list_accounts.json"), lambda_context)

    psu = account_bank.calls[0].kwargs["psu"]
    assert psu.ip_address == "203.0.113.10"  # requestContext.http.sourceIp
    assert psu.http_method == "GET"
    assert (psu.user_agent, psu.accept, psu.accept_language) == ("FintechApp/1.0", "application/json", "fr-FR")
    assert psu.referer is None and psu.date is None and psu.accept_encoding is None  # not sent: not invented


def test_the_ip_comes_from_api_gateway_not_from_a_header(marc, account_bank, load_event, lambda_context):
    event = load_event("accounts/list_accounts.json")
    event["headers"]["x-forwarded-for"] = "198.51.100.99"
    event["headers"]["psu-ip-address"] = "198.51.100.99"

    _call(event, lambda_context)

    assert account_bank.calls[0].kwargs["psu"].ip_address == "203.0.113.10"


def test_no_jwt_is_unauthenticated(load_event, lambda_context, account_wired):
    response, body = _call(load_event("accounts/list_accounts_no_jwt.json"), lambda_context)
    _problem(response, body, 401, "unauthenticated")


def test_balances(marc, load_event, lambda_context):
    response, body = _call(load_event("accounts/get_balances.json"), lambda_context)

    assert response["statusCode"] == 200
    assert body == {
        "balances": [{"type": "CLBD", "name": "Solde", "amount": "4179.95", "currency": "EUR", "reference_date": None}],
        "synced_at": None,  # read from the bank now (the user's app always is)
    }


def test_transactions_first_page_then_the_cursor(marc, account_bank, load_event, lambda_context):
    # Given the first page with dates (inclusive date_to → the bank's exclusive dateTo)
    response, first = _call(load_event("accounts/get_transactions.json"), lambda_context)
    assert response["statusCode"] == 200
    assert len(first["transactions"]) == 100 and first["next_cursor"]
    assert str(account_bank.calls[0].kwargs["date_to"]) == "2026-12-01"

    # When the next-page event carries the cursor
    event = load_event("accounts/get_transactions_next_page.json")
    _with_query(event, cursor=first["next_cursor"])
    response, second = _call(event, lambda_context)

    # Then the rest comes, and no cursor after the last page
    assert response["statusCode"] == 200
    assert len(second["transactions"]) == 50 and second["next_cursor"] is None
    assert {t["id"] for t in first["transactions"]}.isdisjoint({t["id"] for t in second["transactions"]})


def test_all_pages_in_one_call(marc, load_event, lambda_context):
    response, body = _call(load_event("accounts/get_transactions_all.json"), lambda_context)

    assert response["statusCode"] == 200
    assert len(body["transactions"]) == 150 and body["next_cursor"] is None


def test_a_forged_cursor_is_a_validation_error(marc, account_bank, load_event, lambda_context):
    response, body = _call(load_event("accounts/get_transactions_forged_cursor.json"), lambda_context)

    problem = _problem(response, body, 400, "validation_error")
    assert problem["detail"] == "invalid_cursor"
    assert problem["errors"] == [{"field": "cursor", "message": "invalid_cursor"}]
    assert account_bank.calls == []


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "ten"},
        {"date_from": "2026-13-01"},
        {"all": "maybe"},
        {"cursor": "c1." + "A" * 3000},
        {"all": "true", "limit": "10"},
        {"date_from": "2026-11-02", "date_to": "2026-11-01"},
    ],
)
def test_bad_query_parameters_are_validation_errors(marc, account_bank, load_event, lambda_context, query):
    event = _with_query(load_event("accounts/get_balances.json"), **query)
    event["rawPath"] = event["requestContext"]["http"]["path"] = (
        f"/v1/connections/13807/accounts/{ACCOUNT}/transactions"
    )

    response, body = _call(event, lambda_context)

    _problem(response, body, 400, "validation_error")
    assert account_bank.calls == []


@pytest.mark.parametrize("path", ["/v1/connections/1380/accounts", "/v1/connections/ABCDE/identity"])
def test_a_malformed_bank_code_is_a_validation_error(account_wired, load_event, lambda_context, path):
    event = load_event("accounts/list_accounts.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path

    response, body = _call(event, lambda_context)

    _problem(response, body, 400, "validation_error")


def test_identity_on_a_bank_without_it_is_501_without_calling_the_bank(
    account_wired, account_bank, load_event, lambda_context
):
    response, body = _call(load_event("accounts/get_identity_unsupported_bank.json"), lambda_context)

    _problem(response, body, 501, "bank_feature_not_supported")
    assert account_bank.calls == []


def test_identity_and_beneficiaries(marc, account_bank, load_event, lambda_context):
    account_bank.beneficiaries["13807"] = {"beneficiaries": [{"id": "B1", "creditor": {"name": "DUPONT"}}]}

    response, identity = _call(load_event("accounts/get_identity.json"), lambda_context)
    assert response["statusCode"] == 200 and identity["full_name"] == "MALLOW MARC"
    response, beneficiaries = _call(load_event("accounts/get_trusted_beneficiaries.json"), lambda_context)
    assert response["statusCode"] == 200 and beneficiaries["beneficiaries"][0]["name"] == "DUPONT"


def _bank_error(status, message, headers=None):
    """What the STET client raises for a bank answer (aisp.stet.errors maps the real response)."""
    import requests

    from aisp.stet.errors import Endpoint, error_for_response

    answer = requests.Response()
    answer.status_code = status
    answer._content = json.dumps({"status": status, "error": "Error", "message": message}).encode()
    answer.headers.update(headers or {})
    return error_for_response(
        answer, operation="get_balances", endpoint=Endpoint.AISP, bank_code="13807", request_id="r"
    )


QUOTA = "Limite des appels par jour dépassée (Erreur H6B-0429)"


@pytest.mark.parametrize(
    ("status", "message", "headers", "expected", "code", "retry_after"),
    [
        (429, QUOTA, {"Retry-After": "120"}, 429, "bank_rate_limited", "120"),
        (429, QUOTA, {}, 429, "bank_rate_limited", "60"),
        (403, "TMRQ", {}, 429, "bank_rate_limited", "60"),
        (503, "Service momentanément indisponible", {}, 503, "bank_unavailable", None),
        (403, "Access to this resource was not consented by the PSU", {}, 403, "consent_required", None),
        (404, "Unknown account", {}, 404, "account_not_found", None),
        (501, "NIMP", {}, 501, "bank_feature_not_supported", None),
    ],
)
def test_bank_errors_become_stable_codes_without_bank_text(
    marc, account_bank, load_event, lambda_context, status, message, headers, expected, code, retry_after
):
    account_bank.fail("get_balances", *[_bank_error(status, message, headers)] * 3)

    response, body = _call(load_event("accounts/get_balances.json"), lambda_context)

    _problem(response, body, expected, code)
    assert response["headers"].get("Retry-After") == retry_after
    assert message not in response["body"]


def test_a_garbled_bank_answer_is_bank_unavailable(marc, account_bank, load_event, lambda_context):
    account_bank.fail("get_balances", errors.BankProtocolError("bank response is not valid JSON", bank_code="13807"))

    response, body = _call(load_event("accounts/get_balances.json"), lambda_context)

    _problem(response, body, 502, "bank_unavailable")


def test_a_refused_refresh_is_reauth_required(marc, account_bank, bank, load_event, lambda_context):
    account_bank.fail("get_balances", errors.BankTokenInvalidError("401", status=401, bank_code="13807"))
    bank.refresh_error = errors.ReauthRequiredError("invalid_grant", status=400, bank_code="13807")

    response, body = _call(load_event("accounts/get_balances.json"), lambda_context)

    _problem(response, body, 409, "reauth_required")


def test_another_users_bank_code_is_not_found(marc, load_event, lambda_context):
    event = load_event("accounts/list_accounts.json")
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "user-eve"

    response, body = _call(event, lambda_context)

    _problem(response, body, 404, "connection_not_found")


def test_all_accounts_with_one_failing_bank(marc, active_connection, account_bank, load_event, lambda_context):
    active_connection("user-marc", "10207")
    original = account_bank.get_accounts

    def per_bank(bank_code, **kwargs):
        if bank_code == "10207":
            raise errors.BankRateLimitedError("429", status=429, bank_code="10207")
        return original(bank_code, **kwargs)

    account_bank.get_accounts = per_bank

    response, body = _call(load_event("accounts/list_all_accounts.json"), lambda_context)

    assert response["statusCode"] == 200
    assert [(a["bank_code"], a["account_id"]) for a in body["accounts"]] == [("13807", ACCOUNT)]
    assert body["errors"] == [
        {"bank_code": "10207", "status": 429, "code": "bank_rate_limited", "title": "The bank is throttling requests"}
    ]


def test_an_unknown_route_is_a_problem(account_wired, load_event, lambda_context):
    event = load_event("accounts/list_accounts.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/nothing-here"

    response, body = _call(event, lambda_context)

    _problem(response, body, 404, "not_found")
