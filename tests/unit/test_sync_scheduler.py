"""The scheduled sync (``aisp.logic.sync.scheduler``): each connection's own slots in the Paris day (never more than
``runs_per_day``, DST days included), a due ACTIVE connection synced once per slot, a failure retried later, a spent
quota left to the next day, connections that are not ACTIVE left alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aisp import errors
from aisp.logic.sync.scheduler import SyncPolicy, SyncServices, next_slot, sync_due_connections
from aisp.models.quota import paris_day
from tests.fakes import stet_account, stet_transaction

BANK = "13807"
ACCOUNT = "038-CPT30019654051"


@pytest.mark.parametrize(
    "day_start",
    [
        datetime(2026, 12, 5, 23, 0, tzinfo=UTC),  # a winter day
        datetime(2027, 3, 27, 23, 0, tzinfo=UTC),  # 28 March 2027: 23 hours
        datetime(2027, 10, 30, 22, 0, tzinfo=UTC),  # 31 October 2027: 25 hours
    ],
)
@pytest.mark.parametrize("runs", [1, 2, 4])
def test_a_connection_has_its_own_slots_never_more_than_runs_per_day_a_paris_day(day_start, runs):
    for connection_id in ("cn_a", "cn_b", "cn_c"):
        slots, moment = [], day_start - timedelta(seconds=1)
        for _ in range(3 * runs):
            moment = next_slot(connection_id, moment, runs)
            slots.append(moment)
        per_day: dict[object, int] = {}
        for slot in slots:
            per_day[paris_day(slot)] = per_day.get(paris_day(slot), 0) + 1
        assert max(per_day.values()) <= runs
        assert per_day[paris_day(day_start)] == runs
        assert slots == sorted(slots) and len(set(slots)) == len(slots)
    # Different connections, different offsets: the load spreads over the day
    assert len({next_slot(f"cn_{n}", day_start, 2) for n in range(20)}) == 20


@pytest.fixture
def connected(account_services, active_connection, account_bank):
    for user in ("user-marc", "user-alice"):
        active_connection(user, BANK)
    account_bank.accounts[BANK] = {"accounts": [stet_account(ACCOUNT, "FR7613807008043001965405158")]}
    account_bank.transactions[(BANK, ACCOUNT)] = [stet_transaction(n) for n in range(1, 6)]
    return account_services


def _run(account_services, services):
    return sync_due_connections(
        remaining_ms=lambda: 300_000,
        run_id="run-1",
        services=SyncServices(accounts=account_services, keys=services.connections),
        policy=SyncPolicy(runs_per_day=2, workers=4),
    )


def test_a_run_syncs_each_due_connection_once_per_slot(connected, services, clock, transaction_store):
    first = _run(connected, services)

    assert (first.seen, first.synced, first.not_due, first.failed, first.added) == (2, 2, 0, 0, 10)
    again = _run(connected, services)
    assert (again.synced, again.not_due) == (0, 2)

    clock.advance(hours=12, seconds=2)  # past each one's next slot
    later = _run(connected, services)
    assert (later.synced, later.added) == (2, 0)


def test_a_failed_sync_is_retried_within_the_half_hour(connected, services, clock, account_bank):
    account_bank.fail("get_accounts", errors.BankUnavailableError("bank unavailable", status=503, bank_code=BANK))

    first = _run(connected, services)

    assert (first.synced, first.deferred) == (1, 1)
    clock.advance(minutes=31)
    assert _run(connected, services).synced == 1


def test_a_spent_quota_waits_for_the_next_paris_day(connected, services, clock, quota_ledger):
    from aisp.models.quota import QuotaKey, QuotaMethod

    day = paris_day(clock.now())
    for _ in range(4):  # Marc's backend already read his accounts four times today
        quota_ledger.reserve(
            QuotaKey(BANK, "user-marc", None, QuotaMethod.ACCOUNTS, day), limit=4, expires_at=clock.now()
        )

    first = _run(connected, services)

    assert (first.synced, first.deferred) == (1, 1)
    clock.advance(hours=12, seconds=2)  # Alice's next slot, still the same Paris day for Marc's quota
    assert _run(connected, services).synced == 1
    tomorrow = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC) + timedelta(hours=23)
    clock.current = tomorrow
    assert _run(connected, services).synced == 2


def test_connections_that_are_not_active_are_left_alone(connected, services, account_bank):
    from aisp.logic.connections import delete_connection

    delete_connection("user-alice", BANK, services=services)

    summary = _run(connected, services)

    # Deleted: out of the connections' index, so not even seen; the other one synced
    assert (summary.seen, summary.synced, summary.failed) == (1, 1, 0)
    assert len(account_bank.of("get_accounts")) == 1


def test_each_changed_account_is_announced_and_a_failure_too_without_data(connected, services, clock, account_bank):
    from tests.fakes import RecordingPublisher

    events = RecordingPublisher()
    sync = SyncServices(accounts=connected, keys=services.connections, events=events)
    run = sync_due_connections(
        remaining_ms=lambda: 300_000, run_id="run-1", services=sync, policy=SyncPolicy(runs_per_day=2, workers=4)
    )

    assert run.events_published == 2
    updated = [event.detail for event in events.events]
    assert {event.detail_type.value for event in events.events} == {"TransactionsUpdated"}
    assert sorted((d.user_id, d.account_id, d.added, d.modified, d.removed) for d in updated) == [
        ("user-alice", ACCOUNT, 5, 0, 0),
        ("user-marc", ACCOUNT, 5, 0, 0),
    ]
    # No transaction, amount or text in an event: identifiers and counts only
    assert "PAIEMENT" not in str([event.model_dump() for event in events.events])

    clock.advance(hours=12, seconds=2)
    account_bank.fail("get_accounts", errors.BankUnavailableError("bank unavailable", status=503, bank_code=BANK))
    sync_due_connections(
        remaining_ms=lambda: 300_000, run_id="run-2", services=sync, policy=SyncPolicy(runs_per_day=2, workers=4)
    )
    failed = [event.detail for event in events.events if event.detail_type.value == "SyncFailed"]
    assert [(d.bank_code, d.error_code, d.account_id) for d in failed] == [(BANK, "bank_unavailable", None)]
