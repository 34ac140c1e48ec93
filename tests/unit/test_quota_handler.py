"""The quota through the HTTP functions: a server token's answers carry the IETF RateLimit fields, the fifth read of
a Paris day is a 429 ``quota_exhausted`` problem with ``retry_at`` and ``Retry-After``, ``GET .../quota`` lists the
day's counters, and the user-only routes refuse a server token with 403 ``user_token_required``."""

from __future__ import annotations

import json
import re

import pytest

from functions.accounts import app as accounts_app
from functions.connect import app as connect_app
from functions.consents import app as consents_app
from tests.fakes import stet_account

ACCOUNT = "038-CPT30019654051"
IBAN = "FR7613807008043001965405158"
RATE_LIMIT = re.compile(r'^"unattended";r=(\d+);t=(\d+)$')


@pytest.fixture
def marc(account_wired, active_connection, account_bank):
    connection = active_connection("user-marc", "13807")
    account_bank.accounts["13807"] = {"accounts": [stet_account(ACCOUNT, IBAN)]}
    account_bank.balances[("13807", ACCOUNT)] = {
        "balances": [{"balanceType": "CLBD", "name": "Solde", "balanceAmount": {"amount": "1.00", "currency": "EUR"}}]
    }
    return connection


def _call(app, event, lambda_context):
    response = app.lambda_handler(event, lambda_context)
    return response, json.loads(response["body"]) if response.get("body") else None


def _as_backend(event):
    jwt = event["requestContext"]["authorizer"]["jwt"]
    jwt["scopes"] = ["aisp/unattended"]
    jwt["claims"] |= {"sub": "fintech-backend-client", "scope": "aisp/unattended"}
    event["headers"]["aisp-user"] = "user-marc"
    return event


def _remaining(response):
    found = RATE_LIMIT.match(response["headers"]["RateLimit"])
    assert found, response["headers"]
    return int(found[1]), int(found[2])


def test_an_unattended_answer_says_what_is_left(marc, account_bank, load_event, lambda_context):
    seen = []
    for _ in range(4):
        response, body = _call(accounts_app, load_event("accounts/get_balances_unattended.json"), lambda_context)
        assert response["statusCode"] == 200, body
        assert body["balances"][0]["amount"] == "1.00"
        seen.append(_remaining(response)[0])

    assert seen == [3, 2, 1, 0]
    assert response["headers"]["RateLimit-Policy"] == '"unattended";q=4;w=86400'
    assert _remaining(response)[1] == 13 * 3600  # until the Paris midnight after the (fake) clock's 10:00 UTC
    assert [call.kwargs["psu"] for call in account_bank.of("get_balances")] == [None] * 4


def test_the_fifth_is_refused_with_when_to_retry(marc, account_bank, load_event, lambda_context):
    for _ in range(4):
        _call(accounts_app, load_event("accounts/get_balances_unattended.json"), lambda_context)

    response, body = _call(accounts_app, load_event("accounts/get_balances_unattended.json"), lambda_context)

    assert response["statusCode"] == 429
    assert response["headers"]["Content-Type"] == "application/problem+json"
    assert body["code"] == "quota_exhausted"
    # The next Paris midnight after the (fake) clock's now: 24 November 2026, 11:00 in Paris
    assert body["retry_at"] == "2026-11-24T23:00:00Z"
    assert response["headers"]["Retry-After"] == str(13 * 3600)
    assert _remaining(response)[0] == 0 and response["headers"]["RateLimit-Policy"].startswith('"unattended";q=4')
    assert len(account_bank.of("get_balances")) == 4  # the bank was not called


def test_the_users_own_reads_carry_no_quota_fields(marc, load_event, lambda_context):
    for _ in range(6):
        response, _ = _call(accounts_app, load_event("accounts/get_balances.json"), lambda_context)
        assert response["statusCode"] == 200
        assert "RateLimit" not in response["headers"]


def test_the_quota_route_lists_the_days_counters(marc, load_event, lambda_context):
    _call(accounts_app, load_event("accounts/get_balances_unattended.json"), lambda_context)
    _call(accounts_app, _as_backend(load_event("accounts/list_accounts.json")), lambda_context)

    response, body = _call(accounts_app, load_event("accounts/get_quota.json"), lambda_context)

    assert response["statusCode"] == 200, body
    assert "RateLimit" not in response["headers"]  # reading the quota spends nothing
    assert body["bank_code"] == "13807" and body["limit"] == 4 and body["time_zone"] == "Europe/Paris"
    assert body["usage"] == [
        {"method": "accounts", "account_id": None, "used": 1, "remaining": 3},
        {"method": "balances", "account_id": ACCOUNT, "used": 1, "remaining": 3},
    ]
    assert (body["day"], body["resets_at"]) == ("2026-11-24", "2026-11-24T23:00:00Z")


def test_the_quota_of_an_unknown_bank_is_a_404(marc, load_event, lambda_context):
    event = load_event("accounts/get_quota.json")
    event["pathParameters"]["bank_code"] = "99999"
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/connections/99999/quota"

    response, body = _call(accounts_app, event, lambda_context)

    assert (response["statusCode"], body["code"]) == (404, "bank_not_found")


@pytest.mark.parametrize(
    ("app", "event_name"),
    [
        (connect_app, "connect/create_connection.json"),
        (connect_app, "connect/complete_connection.json"),
        (connect_app, "connect/delete_connection.json"),
        (consents_app, "consents/submit_consent.json"),
    ],
)
def test_user_only_routes_refuse_a_server_token(wired, account_wired, app, event_name, load_event, lambda_context):
    response, body = _call(app, _as_backend(load_event(event_name)), lambda_context)

    assert response["statusCode"] == 403, body
    assert body["code"] == "user_token_required"


def test_the_backend_lists_the_users_connections(wired, marc, load_event, lambda_context):
    response, body = _call(connect_app, _as_backend(load_event("connect/list_connections.json")), lambda_context)

    assert response["statusCode"] == 200, body
    assert [(c["bank_code"], c["status"]) for c in body["connections"]] == [("13807", "active")]


def test_a_server_token_without_aisp_user_is_a_400_naming_it(marc, load_event, lambda_context):
    event = load_event("accounts/get_balances_unattended.json")
    del event["headers"]["aisp-user"]

    response, body = _call(accounts_app, event, lambda_context)

    assert (response["statusCode"], body["code"]) == (400, "validation_error")
    assert body["errors"] == [{"field": "Aisp-User", "message": body["detail"]}]


def test_the_sync_route_answers_the_feed_to_the_backend_without_spending_quota(
    marc, account_bank, load_event, lambda_context
):
    response, body = _call(accounts_app, load_event("accounts/sync_transactions.json"), lambda_context)

    assert response["statusCode"] == 200, body
    assert (body["added"], body["modified"], body["removed"], body["has_more"], body["synced_at"]) == (
        [],
        [],
        [],
        False,
        None,
    )
    assert body["next_cursor"].startswith("s1.") and "RateLimit" not in response["headers"]
    assert account_bank.calls == []


@pytest.mark.parametrize(
    ("query", "field"), [({"count": "0"}, "count"), ({"count": "501"}, "count"), ({"cursor": "c1.x"}, None)]
)
def test_the_sync_route_refuses_a_bad_count_or_cursor(marc, load_event, lambda_context, query, field):
    event = load_event("accounts/sync_transactions.json")
    event["queryStringParameters"] = query
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())

    response, body = _call(accounts_app, event, lambda_context)

    assert (response["statusCode"], body["code"]) == (400, "validation_error")
    if field:
        assert [error["field"] for error in body["errors"]] == [f"query.{field}"]
    else:
        assert body["detail"] and "c1.x" not in json.dumps(body)


def test_an_unattended_balances_read_gets_what_the_sync_kept_without_spending_quota(
    marc, account_bank, account_services, load_event, lambda_context
):
    from aisp.logic.sync.run import sync_connection

    sync_connection("user-marc", "13807", services=account_services, owner="sync-test")
    calls = len(account_bank.of("get_balances"))

    response, body = _call(accounts_app, load_event("accounts/get_balances_unattended.json"), lambda_context)

    assert response["statusCode"] == 200, body
    assert body["balances"][0]["amount"] == "1.00" and body["synced_at"] is not None
    assert len(account_bank.of("get_balances")) == calls and "RateLimit" not in response["headers"]

    # live=true reads the bank now, a unit of the quota; the user's own app always does
    live = load_event("accounts/get_balances_unattended.json")
    live["queryStringParameters"], live["rawQueryString"] = {"live": "true"}, "live=true"
    response, body = _call(accounts_app, live, lambda_context)
    assert body["synced_at"] is None and response["headers"]["RateLimit"].startswith('"unattended";r=2;')
    response, body = _call(accounts_app, load_event("accounts/get_balances.json"), lambda_context)
    assert body["synced_at"] is None and len(account_bank.of("get_balances")) == calls + 2
