"""Every events/ file runs in a real Lambda container and answers as the same function in process.

Invocations go through `sam local start-lambda` (one warm container per function, each event a real invoke
through the runtime interface emulator and awslambdaric); docs/sam-local.md's own `sam local invoke` command (a
fresh container) is run too. The oracle is the local stack's in-process copy of the function, invoked right after with
the same event on the same DynamoDB, KMS and sandbox: the handler the unit tests check. Events that carry
placeholders (``REPLACE_WITH_...``: a bank code, a one-time state, a cursor) are left out, except the next page,
whose cursor the container itself hands out.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import boto3
import pytest

from local.aws import FAKE_CREDENTIALS
from tests.containers.conftest import EVENTS, USER, ensure_connected, function_for, in_container, in_process, load
from tests.containers.sam import REGION, sam_invoke
from tests.e2e.test_journey import make_refresh_due, make_sync_due
from tests.reliability.stack_helpers import BANK, MARC_ACCOUNTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PLACEHOLDER = "REPLACE_WITH_"
# Events whose answer depends on their placeholders (the folders' READMEs say what to put there).
PLACEHOLDER_ANSWERS = {
    "oauth_callback/success.json": "a one-time state and the bank's code (test_start_api.py brings real ones)",
    "oauth_callback/denied.json": "a one-time state",
    "oauth_callback/expired_state.json": "a one-time state past its 10 minutes",
    "accounts/get_transactions_next_page.json": "a cursor sealed for its reader (filled from the container below)",
    "connect/complete_connection.json": "the one-time completion value a callback hands the app",
}
# Values that differ between two runs on the same state, by design; compared by type only.
VOLATILE: dict[str, frozenset[str]] = {
    "accounts/get_transactions.json": frozenset({"next_cursor"}),  # sealed with a fresh nonce each time
    "consents/submit_consent.json": frozenset({"updated_at"}),  # the time of each submission
    "token_refresher/fanout.json": frozenset({"run_id", "duration_ms"}),
    "token_refresher/scheduled.json": frozenset({"run_id", "duration_ms"}),
    # a fresh one-time state (in the login link) and expiry each time; the connection id stays the row's
    "connect/create_connection.json": frozenset({"authorization_url", "expires_at"}),
    # each unattended read spends a unit of the day's quota: the second run has one fewer left
    "accounts/get_balances_unattended.json": frozenset({"RateLimit"}),
    "accounts/sync_transactions.json": frozenset({"next_cursor"}),  # sealed with a fresh nonce each time
}
# Events that change what the next one sees: each has its own test below.
STATEFUL = (
    "connect/create_connection.json",
    "connect/delete_connection.json",
    "token_refresher/scheduled.json",
    "account_sync/scheduled.json",
)


def load_recent(event_name: str) -> dict[str, Any]:
    """The events/ file, its date range moved to the last 60 days: the sandbox keeps 90 days of transactions before
    today, so the file's fixed dates age out of it (the in-process tests run on a fake clock instead)."""
    event = load(event_name)
    query = event.get("queryStringParameters") or {}
    if "date_from" in query and "date_to" in query:
        span = min(date.fromisoformat(query["date_to"]) - date.fromisoformat(query["date_from"]), timedelta(days=60))
        date_to = date.today() - timedelta(days=1)
        query = {**query, "date_from": (date_to - span).isoformat(), "date_to": date_to.isoformat()}
        event["queryStringParameters"] = query
        event["rawQueryString"] = urlencode(query)
    return event


def event_names() -> list[str]:
    """Every events/<function>/*.json file whose answer does not depend on a placeholder."""
    names = [str(path.relative_to(EVENTS)) for path in sorted(EVENTS.glob("*/*.json"))]
    return [name for name in names if name not in PLACEHOLDER_ANSWERS]


def comparable(result: Any, volatile: frozenset[str]) -> Any:
    """``result`` with its JSON body decoded and the volatile values replaced by their type."""
    if isinstance(result, dict) and isinstance(result.get("body"), str):
        with contextlib.suppress(ValueError):  # an HTML page stays text
            result = {**result, "body": json.loads(result["body"])}
    return _mask(result, volatile)


def _mask(value: Any, volatile: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {
            key: f"<{type(item).__name__}>" if key in volatile and item else _mask(item, volatile)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_mask(item, volatile) for item in value]
    return value


def test_the_suite_covers_every_event_file():
    # Given the events/ folders, one per function
    names = event_names()

    # Then every function has events here; the one kept with a placeholder never reads it (a forged state is
    # refused before the code is looked at); and the stateful ones have their own tests
    assert {name.split("/")[0] for name in names} == {
        "account_sync",
        "accounts",
        "audit_shipper",
        "connect",
        "consents",
        "oauth_callback",
        "token_refresher",
    }
    kept = {name for name in names if PLACEHOLDER in (EVENTS / name).read_text(encoding="utf-8")}
    assert kept == {"oauth_callback/invalid_state.json"}
    assert set(STATEFUL) <= set(names)
    assert set(PLACEHOLDER_ANSWERS) <= {str(path.relative_to(EVENTS)) for path in EVENTS.glob("*/*.json")}


@pytest.mark.parametrize("event_name", [name for name in event_names() if name not in STATEFUL])
def test_an_event_answers_in_its_container_as_in_process(marc, lambda_client, event_name):
    # Given an events/ file and the function its folder names
    event = load_recent(event_name)
    function = function_for(marc, event_name)

    # When it runs in the function's container, then in process on the same state
    container = in_container(lambda_client, function, event)
    oracle = in_process(marc, function, event)

    # Then the same answer: status, headers and body (volatile values compared by type)
    volatile = VOLATILE.get(event_name, frozenset())
    assert comparable(container, volatile) == comparable(oracle, volatile)
    if isinstance(container, dict) and "statusCode" in container:
        assert container["statusCode"] != 500, container  # no unexpected error


def test_the_container_reads_marcs_balances_from_the_sandbox(marc, lambda_client):
    # Given Marc connected and consenting (the oracle comparison above could pass with both sides broken alike)
    event = load("accounts/get_balances.json")

    # When the accounts function reads his balances in its container
    answer = in_container(lambda_client, "AccountsFunction", event)

    # Then the seed's figures, fetched over mTLS from the sandbox on loopback
    assert answer["statusCode"] == 200, answer
    assert [b["amount"] for b in json.loads(answer["body"])["balances"]] == ["4321.95", "4179.95", "4348.95"]


def test_a_cursor_sealed_in_the_container_opens_in_process_and_in_the_container(marc, lambda_client):
    # Given the first page of transactions, read in the container, with its sealed next_cursor
    first = in_container(lambda_client, "AccountsFunction", load_recent("accounts/get_transactions.json"))
    cursor = json.loads(first["body"])["next_cursor"]
    assert cursor

    # When events/accounts/get_transactions_next_page.json carries it (its placeholder filled, as its README says)
    text = (EVENTS / "accounts" / "get_transactions_next_page.json").read_text(encoding="utf-8")
    event = json.loads(text.replace("REPLACE_WITH_NEXT_CURSOR", quote(cursor, safe="")))
    event["queryStringParameters"]["cursor"] = cursor
    container = in_container(lambda_client, "AccountsFunction", event)
    oracle = in_process(marc, "AccountsFunction", event)

    # Then both open it (same KMS key, same seal) and give the same next page
    assert container["statusCode"] == 200, container
    assert comparable(container, frozenset({"next_cursor"})) == comparable(oracle, frozenset({"next_cursor"}))


def connection_item(stack) -> dict[str, Any]:
    """Marc's 13807 row of the stack's connections table, as DynamoDB stores it."""
    table = stack.environment["CONNECTIONS_TABLE_NAME"]
    dynamodb = boto3.client("dynamodb", endpoint_url=stack.moto_url, region_name=REGION, **FAKE_CREDENTIALS)
    item: dict[str, Any] = dynamodb.get_item(
        TableName=table, Key={"user_id": {"S": USER}, "bank_code": {"S": BANK}}, ConsistentRead=True
    ).get("Item", {})
    return item


def test_the_scheduled_refresher_refreshes_a_due_connection_in_the_stacks_dynamodb(marc, lambda_client):
    # Given Marc's access token about to expire
    make_refresh_due(marc, USER, BANK)
    before = connection_item(marc)
    event = load("token_refresher/scheduled.json")

    # When the schedule's event runs in the refresher's container
    container = in_container(lambda_client, "TokenRefresherFunction", event)

    # Then it refreshed that one connection at the sandbox: new sealed tokens, next refresh in the future
    (run,) = container["runs"]
    assert (run["attempted"], run["refreshed"], run["failed"]) == (1, 1, 0), run
    after = connection_item(marc)
    assert after["tokens"]["B"] != before["tokens"]["B"]
    assert int(after["refresh_due_at"]["N"]) > time.time()
    # And the function in process does the same with the same event, once the connection is due again
    make_refresh_due(marc, USER, BANK)
    volatile = VOLATILE["token_refresher/scheduled.json"]
    assert comparable(in_process(marc, "TokenRefresherFunction", event), volatile) == comparable(container, volatile)


def test_delete_connection_revokes_in_the_container_as_in_process(marc, lambda_client):
    # Given Marc connected
    event = load("connect/delete_connection.json")

    # When the container deletes the connection
    container = in_container(lambda_client, "ConnectFunction", event)

    # Then 204 and the row says so; and in process, after connecting again, the same answer
    assert container["statusCode"] == 204, container
    assert connection_item(marc)["status"]["S"] == "REVOKED"
    ensure_connected(marc)
    assert comparable(in_process(marc, "ConnectFunction", event), frozenset()) == comparable(container, frozenset())


def test_create_connection_starts_a_login_at_the_bank_in_the_container_as_in_process(marc, lambda_client):
    # Given Marc's POST /v1/connections
    event = load("connect/create_connection.json")
    volatile = VOLATILE["connect/create_connection.json"]

    # When it runs in the container, then in process
    container = in_container(lambda_client, "ConnectFunction", event)
    oracle = in_process(marc, "ConnectFunction", event)

    # Then the same pending connection, each answer with its own login state and expiry
    assert container["statusCode"] == 201, container
    assert comparable(container, volatile) == comparable(oracle, volatile)
    login = json.loads(container["body"])["authorization_url"]
    assert login.startswith(f"{marc.sandbox.screens_origin}/{BANK}")
    assert login != json.loads(oracle["body"])["authorization_url"]  # a state is never handed out twice


def test_the_readmes_sam_local_invoke_runs_a_fresh_container(marc, lambda_image, env_file, logs, janitor):
    # Given Marc connected, and docs/sam-local.md's command (with the offline image, on the host network)
    event = EVENTS / "accounts" / "list_accounts.json"

    # When `sam local invoke AccountsFunction -e events/accounts/list_accounts.json --config-env local` runs
    invocation = sam_invoke(
        "AccountsFunction", event, image=lambda_image, env_file=env_file, log_dir=logs, janitor=janitor
    )

    # Then Marc's accounts, as in process, from a container that started cold
    assert invocation.result == in_process(marc, "AccountsFunction", load("accounts/list_accounts.json"))
    accounts = json.loads(invocation.result["body"])["accounts"]
    assert {account["account_id"] for account in accounts} == set(MARC_ACCOUNTS)
    assert "SAM_CONTAINER_ID" in invocation.log and "REPORT RequestId" in invocation.log


def test_the_scheduled_sync_stores_marcs_transactions_and_the_feed_serves_them(marc, lambda_client):
    # Given Marc connected and consenting, never synced, his first sync slot come
    make_sync_due(marc, USER, BANK)
    event = load("account_sync/scheduled.json")

    # When the schedule's event runs in the sync function's container
    run = in_container(lambda_client, "AccountSyncFunction", event)

    # Then it synced his connection from the sandbox into the stack's SyncTable, and the feed (read in process, as
    # the accounts function serves it) gives the transactions the sandbox lists
    assert run["failed"] == 0, run
    assert run["synced"] >= 1 and run["added"] > 0, run
    feed = in_process(marc, "AccountsFunction", load("accounts/sync_transactions.json"))
    body = json.loads(feed["body"])
    assert feed["statusCode"] == 200 and body["synced_at"] is not None, body
    assert body["added"] and all(item["transaction_id"].startswith("tx_") for item in body["added"])
    # And a second run right after finds nothing due (each connection has its own times of the day)
    again = in_container(lambda_client, "AccountSyncFunction", event)
    assert again["synced"] == 0, again
