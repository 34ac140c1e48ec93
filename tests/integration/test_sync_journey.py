"""The background sync end to end: AccountSyncFunction's scheduled run against the offline 89C3 sandbox over HTTPS
with mTLS (moto for the tables), then the accounts function's ``transactions/sync`` route with the backend's token.

The invariant a budgeting app relies on: replaying the feed (added and modified in, removed out) gives exactly what
the live transactions route lists, with no id twice, on the first sync and after the sandbox's clock moves a day.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from aisp import wiring
from functions.account_sync import app as account_sync_app
from tests.conftest import FakeLambdaContext
from tests.integration.journey import (
    SharedClock,
    bank_fields,
    connect_persona,
    live_transactions,
    replay,
    sync_feed,
)

# A first sync of 1,200 transactions through moto's TransactWriteItems, then a day's: minutes on a loaded machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture
def clock(gateway) -> SharedClock:
    shared = SharedClock()
    wiring.connection_services.provide(dataclasses.replace(gateway, clock=shared))
    return shared


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
