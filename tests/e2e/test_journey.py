"""The fintech journey over real HTTP against the local stack (free ports): the seed's persona Marc connects
B.P Grand Ouest through the sandbox's login screens, consents, reads his balances and every transaction, the
refresher renews his token, and ``make demo`` (``local.demo``) prints his balances, then spends the day's unattended
reads of one account as the fintech's backend, then runs the sync, moves the bank's clock a day and syncs again.
"""

from __future__ import annotations

import io
import json
import re
import time
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import boto3
import pytest
import requests

from local import demo
from local.aws import FAKE_CREDENTIALS
from local.stack import start_stack
from local.template import REGION
from tests.sandbox.helpers import MARC, OTP, SOPHIE, flow_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

BANK = "13807"
TIMEOUT = 15
MARC_IBANS = ("FR7613807008043001965405158", "FR7613807008043001965405255", "FR7613807008043001965405352")
COMPTE_PERSO = "038-CPT30019654051"
SEED_BALANCES = ["4321.95", "4179.95", "4348.95"]


@pytest.fixture(scope="module")
def stack(state_dir):
    # The sandbox's admin API on, as `make run` has it: the demo moves the bank's clock
    with start_stack(
        api_port=0, moto_port=0, sandbox_port=0, sandbox_screens_port=0, state_dir=state_dir, sandbox_admin=True
    ) as running:
        yield running


class App:
    """A fintech app calling the gateway for one user, with that user's token."""

    def __init__(self, api_url: str, user: str) -> None:
        self.api_url = api_url
        self.http = requests.Session()
        self.http.trust_env = False
        token = self.http.get(f"{api_url}/_local/token", params={"user": user}, timeout=TIMEOUT)
        assert token.status_code == 200, token.text
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, self.api_url + path, timeout=TIMEOUT, **kwargs)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        # Every answer of the API: never sniffed, and named by the request id the logs and the audit trail carry
        assert response.headers["x-content-type-options"] == "nosniff", (method, path)
        assert response.headers["x-request-id"] == response.headers["apigw-requestid"], (method, path)
        if path != "/v1/banks":  # the user's data is never kept by a browser or a proxy
            assert response.headers["cache-control"] == "no-store", (method, path)
        return response.json() if response.content else None

    def connection(self, bank_code: str = BANK) -> dict[str, Any]:
        (found,) = [c for c in self.call("GET", "/v1/connections")["connections"] if c["bank_code"] == bank_code]
        return found


def log_in_at_bank(authorization_url: str, *, decision: str = "accept", identifier: str = MARC) -> str:
    """A persona's browser (Marc's by default) at the sandbox's screens (identifier, OTP, decision): the URL the
    bank redirects back to."""
    screens = authorization_url.split("?", 1)[0]
    with requests.Session() as browser:
        browser.trust_env = False
        page = browser.get(authorization_url, allow_redirects=False, timeout=TIMEOUT)
        assert page.status_code == 200, page.text
        flow = flow_id(page.text)
        assert browser.post(screens, data={"flow": flow, "identifier": identifier}, timeout=TIMEOUT).status_code == 200
        assert browser.post(screens, data={"flow": flow, "otp": OTP}, timeout=TIMEOUT).status_code == 200
        decided = browser.post(screens, data={"flow": flow, "decision": decision}, allow_redirects=False, timeout=5)
    assert decided.status_code == 302, decided.text
    return decided.headers["Location"]


def complete(app: App, outcome: dict[str, str]) -> dict[str, Any]:
    """The app completes the connection the callback authorized, with the one-time value it was sent back with."""
    assert outcome["status"] == "authorized", outcome
    done: dict[str, Any] = app.call(
        "POST", f"/v1/connections/{outcome['bank_code']}/complete", json={"completion": outcome["completion"]}
    )
    assert done["status"] == "active", done
    return done


def back_at_the_app(stack, callback_url: str) -> dict[str, str]:
    """The browser at the gateway's /oauth/callback: the query it is sent back to the app with."""
    assert callback_url.startswith(f"{stack.api_url}/oauth/callback?")
    response = requests.get(callback_url, allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(f"{stack.api_url}/?")
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def make_refresh_due(stack, user: str, bank_code: str) -> None:
    """As if the access token were about to expire: the connection's refresh comes due now."""
    dynamodb = boto3.client("dynamodb", endpoint_url=stack.moto_url, region_name=REGION, **FAKE_CREDENTIALS)
    dynamodb.update_item(
        TableName=stack.environment["CONNECTIONS_TABLE_NAME"],
        Key={"user_id": {"S": user}, "bank_code": {"S": bank_code}},
        UpdateExpression="SET refresh_due_at = :now",
        ConditionExpression="attribute_exists(refresh_due_at)",
        ExpressionAttributeValues={":now": {"N": str(int(time.time()))}},
    )


def make_sync_due(stack, user: str, bank_code: str) -> None:
    """As if the connection's next sync slot had come: its feed head due now in the sync's due index."""
    dynamodb = boto3.client("dynamodb", endpoint_url=stack.moto_url, region_name=REGION, **FAKE_CREDENTIALS)
    connection = dynamodb.get_item(
        TableName=stack.environment["CONNECTIONS_TABLE_NAME"],
        Key={"user_id": {"S": user}, "bank_code": {"S": bank_code}},
    )["Item"]
    dynamodb.update_item(
        TableName=stack.resources["SyncTable"].ref,
        Key={"connection_id": connection["connection_id"], "sk": {"S": "feed"}},
        UpdateExpression="SET next_sync_at = :now",
        ConditionExpression="attribute_exists(sync_shard)",
        ExpressionAttributeValues={":now": {"N": str(int(time.time()))}},
    )


def audit_records(stack) -> list[dict[str, Any]]:
    """Every record of the audit trail, as the template's AuditLogGroup holds them (moto), once the subscription
    filter has delivered the functions' audit lines to the shipper (now rather than within a second)."""
    stack.deliver_logs()
    logs = boto3.client("logs", endpoint_url=stack.moto_url, region_name=REGION, **FAKE_CREDENTIALS)
    group = stack.resources["AuditLogGroup"].ref
    events: list[dict[str, Any]] = []
    for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
        events += page["events"]
    return [json.loads(event["message"]) for event in events]


def bank_requests(stack, bank_code: str = BANK) -> int:
    """How many requests the bank (the sandbox) served at its token and AISP endpoints."""
    store = stack.sandbox.core.stores[bank_code]
    with store.lock:
        return sum(store.served.values())


def all_transactions(app: App, account_id: str) -> tuple[list[dict[str, Any]], int]:
    """Every transaction of the account, following next_cursor; and how many pages that took."""
    path = f"/v1/connections/{BANK}/accounts/{quote(account_id, safe='')}/transactions"
    transactions: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        page = app.call("GET", path, params={"cursor": cursor} if cursor else None)
        transactions += page["transactions"]
        pages += 1
        # has_more and next_cursor agree: a cursor exactly while more follow
        assert page["has_more"] is (page["next_cursor"] is not None)
        cursor = page["next_cursor"]
        if not page["has_more"] or pages > 20:
            return transactions, pages


def test_marc_connects_consents_and_reads_everything(stack):
    # Given a token for user marc, and the bank list
    audited_before, served_before = len(audit_records(stack)), bank_requests(stack)
    app = App(stack.api_url, "marc")
    banks = app.call("GET", "/v1/banks")["banks"]
    assert any(bank["bank_code"] == BANK for bank in banks)

    # When he connects B.P Grand Ouest, the app sending his browser to the login link
    started = app.call(
        "POST", "/v1/connections", json={"bank_code": BANK, "return_url": f"{stack.api_url}/"}, expect=201
    )
    assert started["authorization_url"].startswith(f"{stack.sandbox.screens_origin}/{BANK}/")
    assert app.connection()["status"] == "pending"

    # And he logs in at the sandbox's screens, which send his browser to the gateway's callback
    outcome = back_at_the_app(stack, log_in_at_bank(started["authorization_url"]))

    # Then he is back at the app, which completes the connection with the one-time value it was given
    assert outcome == {"status": "authorized", "bank_code": BANK, "completion": outcome["completion"]}
    assert app.connection()["status"] == "authorized"
    completed = app.call("POST", f"/v1/connections/{BANK}/complete", json={"completion": outcome["completion"]})
    assert completed == app.connection()
    connection = app.connection()
    assert connection["status"] == "active"
    assert connection["connection_id"] == started["connection_id"]
    assert connection["consent"] is None

    # When the app lists his accounts and he consents to all of them
    accounts = app.call("GET", f"/v1/connections/{BANK}/accounts")["accounts"]
    assert tuple(account["iban"] for account in accounts) == MARC_IBANS
    consent = {"balances": list(MARC_IBANS), "transactions": list(MARC_IBANS), "psu_identity": True}
    answer = app.call("PUT", f"/v1/connections/{BANK}/consent", json={**consent, "trusted_beneficiaries": True})

    # Then the consent is in force, on the connection too
    assert answer["consent"]["balances"] == list(MARC_IBANS)
    assert answer["consent"]["psu_identity"] is True
    assert app.connection()["consent"]["transactions"] == list(MARC_IBANS)
    assert app.call("GET", f"/v1/connections/{BANK}/identity")["full_name"] == "MALLOW MARC"

    # And his balances are the seed's
    balances = app.call("GET", f"/v1/connections/{BANK}/accounts/{COMPTE_PERSO}/balances")["balances"]
    assert [balance["amount"] for balance in balances] == SEED_BALANCES
    assert {balance["currency"] for balance in balances} == {"EUR"}

    # And every transaction comes, newest first, in the bank's pages of 100, each once
    transactions, pages = all_transactions(app, COMPTE_PERSO)
    assert len(transactions) > 300  # 3 to 6 a day over 90 days
    assert pages == -(-len(transactions) // 100)
    assert len({t["id"] for t in transactions}) == len(transactions)
    assert all(Decimal(t["amount"]) < 0 for t in transactions if t["credit_debit"] == "debit")
    assert transactions[0]["status"] == "pending"
    assert transactions[-1]["status"] == "booked"

    # When the refresher ticks with his access token due for renewal
    before = app.connection()
    make_refresh_due(stack, "marc", BANK)
    result = stack.tick("TokenRefresherFunction")

    # Then it refreshed his connection: expiry moved forward (or stayed within the second), and the gateway
    # reads his balances with the new token (the bank revoked the old one on refresh)
    (run,) = result["runs"]
    assert run["refreshed"] == 1, run
    assert run["failed"] == run["reauth_required"] == 0
    after = app.connection()
    assert after["access_expires_at"] >= before["access_expires_at"]
    balances = app.call("GET", f"/v1/connections/{BANK}/accounts/{COMPTE_PERSO}/balances")["balances"]
    assert [balance["amount"] for balance in balances] == SEED_BALANCES

    # And his connection is still ACTIVE with the same consent
    assert after["status"] == "active"
    assert after["connection_id"] == started["connection_id"]
    assert after["consent"]["balances"] == list(MARC_IBANS)

    # And the audit trail holds one record per call the bank served, and each lifecycle change, and no secret
    assert_audited(stack, app, audited_before, served_before, started["connection_id"], outcome["completion"])


def assert_audited(
    stack, app: App, audited_before: int, served_before: int, connection_id: str, completion: str
) -> None:
    """The audit trail of Marc's journey: one record per call the bank served, the lifecycle changes, ids only."""
    records = audit_records(stack)[audited_before:]
    bank_calls = [r for r in records if r["kind"] == "bank_call"]
    assert len(bank_calls) == bank_requests(stack) - served_before
    assert {r["operation"] for r in bank_calls} >= {
        "exchange_code",
        "get_accounts",
        "put_consents",
        "get_balances",
        "get_transactions",
        "refresh",
    }
    changes = [r["operation"] for r in records if r["kind"] == "lifecycle"]
    assert changes == ["started", "authorized", "activated"]
    for record in records:
        assert (record["user_id"], record["bank_code"]) == ("marc", BANK)
        assert record["connection_id"] == connection_id
        assert record["request_id"] and record["time"].endswith("Z")
    # (the second balances read first tried the token the refresher had just replaced: that attempt is audited too)
    balances_read = [r for r in bank_calls if r["operation"] == "get_balances"]
    assert [r["outcome"] for r in balances_read] == ["ok", "token_invalid", "ok"]
    assert {(r["account_id"], r["attended"], r["caller"]) for r in balances_read} == {(COMPTE_PERSO, True, "marc")}
    refreshed = next(r for r in bank_calls if r["operation"] == "refresh")
    assert refreshed["attended"] is False and "caller" not in refreshed  # the refresher, nobody present
    # And no record holds a secret or an IBAN
    text = json.dumps(records)
    store = stack.sandbox.core.stores[BANK]
    with store.lock:
        issued = [*store.access_tokens, *store.refresh_tokens, *store.codes]
    for secret in (*issued, *MARC_IBANS, completion, app.http.headers["Authorization"][7:]):
        assert secret not in text


def test_a_refusal_at_the_bank_comes_back_as_an_error(stack):
    # Given a user starting a connection
    app = App(stack.api_url, "refuser")
    started = app.call(
        "POST", "/v1/connections", json={"bank_code": BANK, "return_url": f"{stack.api_url}/"}, expect=201
    )

    # When he refuses at the bank
    outcome = back_at_the_app(stack, log_in_at_bank(started["authorization_url"], decision="refuse"))

    # Then the app gets status=error with a stable code, and the connection says why rather than staying PENDING
    assert outcome == {"status": "error", "error": "access_denied"}
    connection = app.connection()
    assert (connection["status"], connection["status_reason"]) == ("failed", "access_denied")
    problem = app.call("GET", f"/v1/connections/{BANK}/accounts", expect=409)
    assert {"title", "code", "status"} <= set(problem)
    assert problem["code"] == "connection_failed"


def test_a_connection_the_bank_revoked_is_reported_then_reconnected_under_the_same_id(stack):
    # Given Sophie's connection (a user of her own), consented, which the bank then revokes (her app's access withdrawn)
    app = App(stack.api_url, "sophie")
    body = {"bank_code": BANK, "return_url": f"{stack.api_url}/"}
    started = app.call("POST", "/v1/connections", json=body, expect=201)
    complete(app, back_at_the_app(stack, log_in_at_bank(started["authorization_url"], identifier=SOPHIE)))
    store = stack.sandbox.core.stores[BANK]
    store.revoke_psu(SOPHIE)

    # When the app reads her accounts, then lists every bank's
    refused = app.call("GET", f"/v1/connections/{BANK}/accounts", expect=409)
    everything = app.call("GET", "/v1/accounts")

    # Then she must log in again, and the listing says so rather than dropping the bank
    assert refused["code"] == "reauth_required"
    connection = app.connection()
    assert (connection["status"], connection["status_reason"]) == ("reauth_required", "access_revoked")
    assert everything["accounts"] == []
    assert [(e["bank_code"], e["code"]) for e in everything["errors"]] == [(BANK, "reauth_required")]

    # When she reconnects (the page's Reconnect: a new login for the same bank), and her app completes it
    again = app.call("POST", "/v1/connections", json=body, expect=201)
    complete(app, back_at_the_app(stack, log_in_at_bank(again["authorization_url"], identifier=SOPHIE)))

    # Then it is the same connection, ACTIVE again, and her accounts are read
    assert again["connection_id"] == started["connection_id"]
    assert app.connection()["status"] == "active" and app.connection()["status_reason"] is None
    assert app.call("GET", f"/v1/connections/{BANK}/accounts")["accounts"]


def test_make_demo_prints_marcs_balances(stack):
    # When `make demo` runs against the stack
    out = io.StringIO()
    status = demo.main(["--base-url", stack.api_url], out=out)

    # Then it went through and printed the seed's balances and the numbers
    printed = out.getvalue()
    assert status == 0, printed
    assert "FR7613807008043001965405158 Compte perso: 4321.95 / 4179.95 / 4348.95 EUR" in printed
    assert "   accounts: 3\n" in printed
    assert "   connection: active\n" in printed
    (count,) = [line for line in printed.splitlines() if line.startswith("   transactions: ")]
    assert int(count.split()[1]) > 900

    # And, as the fintech's backend, Compte perso's balances four times with what is left, the fifth refused
    assert "as the fintech's backend: GET /_local/token?client=backend&scope=aisp/unattended" in printed
    for read, left in ((1, 3), (2, 2), (3, 1), (4, 0)):
        assert f'   read {read}: 200, RateLimit "unattended";r={left};t=' in printed
    assert "   read 5: 429 quota_exhausted, retry_at " in printed
    assert "): the bank was not called\n" in printed
    assert f"   balances {COMPTE_PERSO}: used 4, 0 left of 4\n" in printed

    # And the scheduled sync run now, its feed read to the end, then after the bank's clock moved a day, only
    # that day's changes
    runs = re.findall(
        r"   run: (\d+) connection\(s\) synced, 0 deferred; (\d+) added, (\d+) modified, (\d+) removed", printed
    )
    feeds = re.findall(r"   (\d+) added, (\d+) modified, (\d+) removed in \d+ page\(s\); synced_at 20", printed)
    assert len(runs) == len(feeds) == 2, printed
    (first_feed, day_feed) = [tuple(map(int, feed)) for feed in feeds]
    assert first_feed[0] > 900 and first_feed[1:] == (0, 0), printed
    assert 0 < sum(day_feed) < first_feed[0], printed
    assert "the bank's clock a day ahead: POST /_local/sandbox/clock {advance_seconds: 86400}" in printed
    assert "what changed: GET /v1/connections/13807/transactions/sync?cursor=<the saved next_cursor>" in printed


def test_demo_says_which_step_failed(stack, capsys):
    # When the demo is pointed at a bank without the persona (the sandbox's screens refuse the identifier)
    status = demo.main(["--base-url", stack.api_url, "--bank", "10207", "--user", "demo-error"], out=io.StringIO())

    # Then it fails with the step and the reason
    assert status == 1
    error = capsys.readouterr().err
    assert "demo failed at step 4" in error
    assert "the bank refused the login" in error
