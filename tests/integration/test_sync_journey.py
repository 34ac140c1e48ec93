"""The background sync end to end: AccountSyncFunction's scheduled run against the offline 89C3 sandbox over HTTPS
with mTLS (moto for the tables), then the accounts function's ``transactions/sync`` route with the backend's token.

The invariant a budgeting app relies on: replaying the feed (added and modified in, removed out) gives exactly what
the live transactions route lists, with no id twice, on the first sync and after the sandbox's clock moves a day;
and a complete live read puts its changes in the feed at once, so the next sync need not read the account again.
Both announce what they wrote on the fintech's bus (moto's EventBridge, a rule copying into an SQS queue).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from aisp import wiring
from aisp.aws.messaging import EVENT_SOURCE
from aisp.models.quota import paris_day
from aisp.settings import load_settings
from functions.account_sync import app as account_sync_app
from tests.conftest import FakeLambdaContext
from tests.integration.journey import (
    BANK,
    SharedClock,
    accounts,
    at_path,
    bank_fields,
    bus_inbox,
    connect_persona,
    event,
    live_transactions,
    replay,
    sync_feed,
)
from tests.sandbox.helpers import MARC_ACCOUNTS

# A first sync of 1,200 transactions through moto's TransactWriteItems, then a day's: minutes on a loaded machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture
def clock(gateway) -> SharedClock:
    shared = SharedClock()
    wiring.connection_services.provide(dataclasses.replace(gateway, clock=shared))
    return shared


@pytest.fixture
def inbox(aws, monkeypatch) -> Callable[[], list[dict[str, Any]]]:  # noqa: ARG001 - moto
    """The fintech's bus (moto) named to both functions, with a rule copying every gateway event into an SQS queue;
    returns a reader of what arrived since it last read."""
    received = bus_inbox("fintech-sync-it", queue_name="sync-inbox")
    monkeypatch.setenv("EVENT_BUS_NAME", "fintech-sync-it")
    load_settings.cache_clear()
    wiring.sync_events.reset()
    wiring.live_events.reset()
    return received


def _updates(received: list[dict[str, Any]]) -> dict[str, tuple[str, int, int, int]]:
    """The TransactionsUpdated received, by account: (trigger, added, modified, removed); an account twice fails."""
    updates = [event["detail"] for event in received if event["detail-type"] == "TransactionsUpdated"]
    by_account = {d["account_id"]: (d["trigger"], d["added"], d["modified"], d["removed"]) for d in updates}
    assert len(by_account) == len(updates), updates
    return by_account


def _counts(changes: list[tuple[str, Any]], trigger: str) -> dict[str, tuple[str, int, int, int]]:
    """What the feed's ``changes`` say each account's TransactionsUpdated counts."""
    kinds = Counter((item["account_id"], kind) for kind, item in changes)
    return {
        account: (trigger, kinds[account, "added"], kinds[account, "modified"], kinds[account, "removed"])
        for account in {account for account, _ in kinds}
    }


class SyncContext(FakeLambdaContext):
    """AccountSyncFunction's context: its 300 s timeout."""

    def get_remaining_time_in_millis(self) -> int:
        return 290_000


def _run_schedule(load_event, _lambda_context) -> dict[str, Any]:
    return account_sync_app.lambda_handler(load_event("account_sync/scheduled.json"), SyncContext())


def test_replaying_the_feed_gives_the_live_transactions_then_and_a_day_later(
    clock, sandbox, admin, load_event, lambda_context
):
    connect_persona(load_event, lambda_context)
    # Completed: in the due index at its first slot, hours away (the local stack's due_now, here by the store)
    marc = wiring.connection_services().connections.find("user-marc", BANK)
    assert _run_schedule(load_event, lambda_context)["seen"] == 0
    wiring.transaction_store().defer_sync(marc.connection_id, at=clock.now())

    run = _run_schedule(load_event, lambda_context)
    assert (run["synced"], run["failed"]) == (1, 0), run
    changes, cursor = sync_feed(load_event, lambda_context)
    state = replay({}, changes)
    live = live_transactions(load_event, lambda_context)
    assert live and set(state) == set(live)
    assert all(bank_fields(state[key]) == live[key] for key in live)
    assert {kind for kind, _ in changes} == {"added"}

    # A day later (both clocks): the next run syncs again and the feed carries only what changed
    clock.advance(admin, sandbox.admin_url, 86_400)
    run = _run_schedule(load_event, lambda_context)
    assert (run["synced"], run["failed"]) == (1, 0), run
    later, _ = sync_feed(load_event, lambda_context, cursor)
    assert later and len(later) < len(changes)  # not the whole history again
    state = replay(state, later)
    live = live_transactions(load_event, lambda_context)
    assert set(live) <= set(state)
    assert all(bank_fields(state[key]) == live[key] for key in live)
    # The store keeps what aged out of the bank's 90 days (it was not removed, it is just older than the window)
    oldest_live = min(item["booking_date"] or item["transaction_date"] for item in live.values())
    aged = [state[key] for key in set(state) - set(live)]
    assert aged and all((item["booking_date"] or item["transaction_date"]) < oldest_live for item in aged)


def test_two_syncs_racing_report_each_transaction_once(clock, sandbox, load_event, lambda_context):
    from concurrent.futures import ThreadPoolExecutor

    from aisp.errors import ConflictError
    from aisp.logic.sync.run import sync_connection

    connect_persona(load_event, lambda_context)
    services = wiring.account_services()

    def sync(owner: str) -> str:
        try:
            result = sync_connection("user-marc", BANK, services=services, owner=owner)
        except ConflictError:  # it lost the store to the other one three times: its next slot takes it
            return "conflict"
        return f"added {result.added}"

    # Both read the store before either writes (the bank's 1,200 transactions take longer than the store's read)
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(sync, ["sync-a", "sync-b"]))

    changes, _ = sync_feed(load_event, lambda_context)
    state = replay({}, changes)  # fails on any id added twice
    live = live_transactions(load_event, lambda_context)
    assert set(state) == set(live) and len(changes) == len(live)
    winner = f"added {len(live)}"
    assert winner in outcomes and {*outcomes} - {winner} <= {"added 0", "conflict"}, outcomes


def test_a_live_read_after_a_day_fills_the_feed_and_the_next_sync_reads_none_of_it_again(
    clock, sandbox, admin, inbox, load_event, lambda_context
):
    connect_persona(load_event, lambda_context)
    marc = wiring.connection_services().connections.find("user-marc", BANK)
    wiring.transaction_store().defer_sync(marc.connection_id, at=clock.now())  # its first slot, now
    run = _run_schedule(load_event, lambda_context)
    assert run["synced"] == 1
    first, cursor = sync_feed(load_event, lambda_context)
    state = replay({}, first)
    # The sync announced each account it wrote, counting what the feed got
    announced = inbox()
    assert _updates(announced) == _counts(first, "schedule") and run["events_published"] == len(announced)
    assert {event["detail"]["connection_id"] for event in announced} == {marc.connection_id}

    # A day later, the user's app reads every account's transactions of the bank's last 89 days (all pages)
    clock.advance(admin, sandbox.admin_url, 86_400)
    since = (paris_day(clock.now()) - timedelta(days=89)).isoformat()
    for account in MARC_ACCOUNTS:
        path = f"/v1/connections/{BANK}/accounts/{account}/transactions"
        query = {"all": "true", "date_from": since}
        loaded = at_path(event(load_event, "accounts/get_transactions.json", **query), path, account_id=account)
        response, body = accounts(loaded, lambda_context)
        assert response["statusCode"] in (200, 403), body  # 403: not consented for transactions
        assert response["statusCode"] == 403 or body["next_cursor"] is None

    # The feed has the day's changes, as the live route lists them
    later, cursor = sync_feed(load_event, lambda_context, cursor)
    assert later and len(later) < len(first)
    state = replay(state, later)
    live = live_transactions(load_event, lambda_context)
    assert set(live) <= set(state) and all(bank_fields(state[key]) == live[key] for key in live)
    # And the live reads announced them: one TransactionsUpdated an account they changed, counting the feed's
    announced = inbox()
    assert _updates(announced) == _counts(later, "live")
    assert all(event["source"] == EVENT_SOURCE for event in announced)
    assert "remittance" not in json.dumps(announced) and "amount" not in json.dumps(announced)

    # The next scheduled sync adds nothing, and spends no transactions unit today (the account list's and the
    # balances' only: the app read no balances)
    run = _run_schedule(load_event, lambda_context)
    assert (run["synced"], run["failed"], run["added"], run["modified"], run["removed"]) == (1, 0, 0, 0, 0), run
    assert sync_feed(load_event, lambda_context, cursor)[0] == []
    assert inbox() == []  # nothing new: nothing announced
    response, body = accounts(event(load_event, "accounts/get_quota.json"), lambda_context)
    assert response["statusCode"] == 200, body
    assert {usage["method"] for usage in body["usage"]} == {"accounts", "balances"}
