"""The scheduled sync (``aisp.logic.sync.scheduler``): each connection's own slots in the Paris day (never more than
``runs_per_day``, DST days included), a due ACTIVE connection synced once per slot, a failure retried later, a spent
quota left to the next day, connections that are not ACTIVE out of the due index, the fan-out of shards one
invocation cannot do, and the daily catch-up of connections the index does not hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aisp import errors
from aisp.logic.sync.scheduler import SyncPolicy, SyncServices, next_slot, sync_due_connections, sync_fanout_request
from aisp.logic.sync.slots import LATE_MARGIN
from aisp.models.quota import paris_day, quota_day_seconds
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


@pytest.mark.parametrize(
    "day_start",
    [
        datetime(2026, 12, 5, 23, 0, tzinfo=UTC),
        datetime(2027, 3, 27, 23, 0, tzinfo=UTC),  # 23 hours
        datetime(2027, 10, 30, 22, 0, tzinfo=UTC),  # 25 hours
    ],
)
@pytest.mark.parametrize("runs", [1, 2, 4])
def test_no_slot_is_in_the_last_hour_of_its_part_of_the_day(day_start, runs):
    # A slot in the day's last minutes would be taken by a run after midnight and count on the next Paris day
    day = paris_day(day_start)
    length = quota_day_seconds(day)
    part = timedelta(seconds=length / runs)
    starts = [day_start + part * index for index in range(runs)]
    for n in range(400):
        moment = day_start - timedelta(seconds=1)
        for index in range(runs):
            moment = next_slot(f"cn_{n:032x}", moment, runs)
            assert starts[index] <= moment <= starts[index] + part - LATE_MARGIN + timedelta(seconds=1)
            assert paris_day(moment + LATE_MARGIN - timedelta(seconds=2)) == day


@pytest.fixture
def connected(account_services, active_connection, account_bank, transaction_store, clock):
    """Marc's and Alice's ACTIVE connections, each in the due index and due now (as the connect flow leaves them,
    their first slot come)."""
    for user in ("user-marc", "user-alice"):
        connection = active_connection(user, BANK)
        transaction_store.schedule_sync(connection.connection_id, user_id=user, bank_code=BANK, at=clock.now())
    account_bank.accounts[BANK] = {"accounts": [stet_account(ACCOUNT, "FR7613807008043001965405158")]}
    account_bank.transactions[(BANK, ACCOUNT)] = [stet_transaction(n) for n in range(1, 6)]
    return account_services


def _run(account_services, services, **policy):
    return sync_due_connections(
        remaining_ms=lambda: 300_000,
        run_id="run-1",
        services=SyncServices(accounts=account_services, keys=services.connections),
        policy=SyncPolicy(runs_per_day=2, workers=4, **policy),
    )


def test_a_run_syncs_each_due_connection_once_per_slot(connected, services, clock, transaction_store):
    first = _run(connected, services)

    assert (first.seen, first.synced, first.not_due, first.failed, first.added) == (2, 2, 0, 0, 10)
    again = _run(connected, services)
    assert (again.seen, again.synced) == (0, 0)  # not due: not even read from the index

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


def test_connections_that_are_not_active_are_left_alone(connected, services, account_bank, transaction_store):
    from dataclasses import replace

    from aisp.logic.connections import delete_connection

    delete_connection("user-alice", BANK, services=replace(services, transactions=transaction_store))

    summary = _run(connected, services)

    # Deleted: its head purged with its data, so not even seen; the other one synced
    assert (summary.seen, summary.synced, summary.failed) == (1, 1, 0)
    assert len(account_bank.of("get_accounts")) == 1
    assert transaction_store.scheduled("cn_user-alice_13807") is None


def test_a_connection_that_needs_reauth_leaves_the_index_until_it_is_active_again(
    connected, services, account_bank, transaction_store, clock
):
    marc = services.connections.find("user-marc", BANK)
    services.connections.mark_reauth_required(marc, now=clock.now())

    first = _run(connected, services)

    assert (first.seen, first.synced, first.unscheduled) == (2, 1, 1)
    assert transaction_store.scheduled(marc.connection_id) is None
    clock.advance(hours=12, seconds=2)
    assert (_run(connected, services).seen, len(account_bank.of("get_accounts"))) == (1, 2)  # Alice's only


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


def _many(count, active_connection, transaction_store, clock):
    """``count`` ACTIVE connections, each due now."""
    for n in range(count):
        connection = active_connection(f"user-{n:03d}", BANK)
        transaction_store.schedule_sync(
            connection.connection_id, user_id=f"user-{n:03d}", bank_code=BANK, at=clock.now()
        )


def test_due_work_beyond_one_invocation_is_fanned_out_by_groups_of_shards(
    connected, services, active_connection, transaction_store, clock
):
    from aisp.models.sync import SYNC_SHARDS, sync_shard
    from tests.fakes import RecordingFanoutQueue

    _many(60, active_connection, transaction_store, clock)
    queue = RecordingFanoutQueue()
    sync = SyncServices(accounts=connected, keys=services.connections, fanout=queue)
    # 0.1 connection a second over the 270 s left: one invocation syncs about 27 of the 62 due
    policy = SyncPolicy(runs_per_day=2, workers=4, rate_per_second=0.1)

    summary = sync_due_connections(remaining_ms=lambda: 300_000, run_id="run-1", services=sync, policy=policy)

    per_shard = {
        shard: transaction_store.count_due_syncs(shard, due_before=clock.now()) for shard in range(SYNC_SHARDS)
    }
    sent = [list(request.shards) for request in queue.requests]
    assert sent == summary.fanned_out and len(sent) >= 2
    assert {request.run_id for request in queue.requests} == {"run-1"}
    # Every shard with due work is either here or in exactly one message; the ones sent are still all due
    assert sorted(summary.shards + [shard for group in sent for shard in group]) == sorted(
        {sync_shard(f"cn_user-{n:03d}_{BANK}") for n in range(60)}
        | {sync_shard(f"cn_user-marc_{BANK}")}
        | {sync_shard(f"cn_user-alice_{BANK}")}
    )
    for group in sent:
        assert sum(per_shard[shard] for shard in group) <= 27 or len(group) == 1
        assert all(per_shard[shard] > 0 for shard in group)
    assert summary.synced == 62 - sum(per_shard.values())
    assert all(per_shard[shard] == 0 for shard in summary.shards)

    # Each message is one worker's run: its shards only, never fanning out again
    for request in queue.requests:
        worker = sync_fanout_request(request, remaining_ms=lambda: 300_000, run_id="w", services=sync, policy=policy)
        assert worker.shards == list(request.shards) and worker.fanned_out == []
    assert len(queue.requests) == len(sent)
    assert sum(transaction_store.count_due_syncs(shard, due_before=clock.now()) for shard in range(SYNC_SHARDS)) == 0


def test_a_failed_fan_out_keeps_every_shard_here(connected, services, active_connection, transaction_store, clock):
    from aisp.errors import FanoutError

    class Refusing:
        def send(self, requests):
            raise FanoutError("fan-out queue call failed")

    _many(30, active_connection, transaction_store, clock)
    sync = SyncServices(accounts=connected, keys=services.connections, fanout=Refusing())
    policy = SyncPolicy(runs_per_day=2, workers=4, rate_per_second=0.05)

    summary = sync_due_connections(remaining_ms=lambda: 300_000, run_id="run-1", services=sync, policy=policy)

    assert (summary.fanned_out, summary.synced) == ([], 32)


def test_a_run_within_one_invocation_sends_nothing(connected, services):
    from tests.fakes import RecordingFanoutQueue

    queue = RecordingFanoutQueue()
    sync = SyncServices(accounts=connected, keys=services.connections, fanout=queue)

    summary = sync_due_connections(
        remaining_ms=lambda: 300_000, run_id="run-1", services=sync, policy=SyncPolicy(runs_per_day=2, workers=4)
    )

    assert (queue.requests, summary.fanned_out, summary.synced) == ([], [], 2)


def test_the_catch_up_schedules_older_connections_once_a_paris_day(
    account_services, services, active_connection, account_bank, transaction_store, clock
):
    # Connections made before the due index: ACTIVE, with no head
    older = [active_connection(user, BANK) for user in ("user-marc", "user-alice")]
    account_bank.accounts[BANK] = {"accounts": [stet_account(ACCOUNT, "FR7613807008043001965405158")]}

    first = _run(account_services, services)

    assert (first.seen, first.caught_up) == (0, 2)
    for connection in older:  # at their own next slot, not at once
        assert transaction_store.scheduled(connection.connection_id) == int(
            next_slot(connection.connection_id, clock.now(), 2).timestamp()
        )
    # Walked once a Paris day: a later run the same day does not walk again
    newer = active_connection("user-bob", BANK)
    assert _run(account_services, services).caught_up == 0
    assert transaction_store.scheduled(newer.connection_id) is None
    clock.current = datetime.combine(paris_day(clock.now()) + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    clock.advance(hours=1)
    assert _run(account_services, services).caught_up == 1
    assert transaction_store.scheduled(newer.connection_id) is not None


def test_a_run_out_of_time_does_not_walk_the_catch_up(account_services, services, active_connection):
    active_connection("user-marc", BANK)

    summary = sync_due_connections(
        remaining_ms=lambda: 10_000,  # within the 30 s reserve
        run_id="run-1",
        services=SyncServices(accounts=account_services, keys=services.connections),
        policy=SyncPolicy(runs_per_day=2, workers=4),
    )

    assert (summary.caught_up, summary.stopped_for_time) == (0, False)
