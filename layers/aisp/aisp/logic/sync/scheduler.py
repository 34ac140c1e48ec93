"""The scheduled sync: every ACTIVE connection synced at its own times of the Paris day (``slots.next_slot``),
``runs_per_day`` times at most, on a bounded thread pool within the invocation's time, at any scale.

A run finds the due connections in the store's due index shard by shard (no Scan), fans groups of shards out to the
SQS queue when they are more than this invocation can sync before its timeout, claims each due connection (one
conditional write: two runs never sync one connection at once) and sets its next slot before it reads the bank; a
failure defers it a little, an exhausted quota to the next Paris day, a connection no longer ACTIVE leaves the index.
With time to spare, a run walks one more shard of ``RefreshDueIndex`` a Paris day for ACTIVE connections the index
does not hold yet (the catch-up). Design: ``docs/sync.md`` (The schedule).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from aisp import errors
from aisp.logic.fanout import capacity, plan_fanout
from aisp.logic.ports import EventPublisher, FanoutQueue, RefreshRepository
from aisp.logic.services import AccountServices
from aisp.logic.sync.run import sync_connection
from aisp.logic.sync.slots import next_slot, previous_slot
from aisp.models.connection import Connection, ConnectionStatus
from aisp.models.quota import paris_day, quota_resets_at
from aisp.models.refresh import (
    REFRESH_SHARDS,
    ConnectionKey,
    FanoutRequest,
    LifecycleEvent,
    LifecycleEventType,
    SyncDetail,
)
from aisp.models.sync import SYNC_SHARDS, DueSync
from aisp.observability import logger, tracer

__all__ = [
    "SyncPolicy",
    "SyncServices",
    "SyncSummary",
    "next_slot",
    "previous_slot",
    "sync_due_connections",
    "sync_fanout_request",
]

# Every key of a RefreshDueIndex shard, whatever its refresh time (the catch-up): its range key is epoch seconds.
_ALL: Final = 2**62
# SyncFailed's error_code, as the API names these errors (most specific first).
_ERROR_CODES: Final = (
    (errors.QuotaExhaustedError, "quota_exhausted"),
    (errors.BankRateLimitedError, "bank_rate_limited"),
    (errors.UpstreamError, "bank_unavailable"),
    (errors.ConflictError, "conflict"),
    (errors.PersistenceError, "service_unavailable"),
    (errors.KeyServiceError, "service_unavailable"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncPolicy:
    """How a run behaves (``SyncRunsPerDay`` and the settings of ``AccountSyncFunction``)."""

    runs_per_day: int = 2
    workers: int = 16
    time_reserve_seconds: float = 30.0
    retry_after: timedelta = timedelta(minutes=30)
    # Connections one invocation syncs a second (bench/README.md, Sync): sizes the fan-out.
    rate_per_second: float = 10.0
    shards: int = SYNC_SHARDS
    page_size: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncServices:
    """The account services a sync uses (the due index is its transaction store's), the repository whose index the
    catch-up walks, the fintech's bus (``TransactionsUpdated``, ``SyncFailed``; ``None``: no events) and the fan-out
    queue (``None``: never fan out)."""

    accounts: AccountServices
    keys: RefreshRepository
    events: EventPublisher | None = None
    fanout: FanoutQueue | None = None


class SyncSummary(BaseModel):
    """What one run did (logged, returned by the handler; counts only)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    shards: list[int] = Field(default_factory=list)
    fanned_out: list[list[int]] = Field(default_factory=list)
    failed_shards: list[int] = Field(default_factory=list)
    seen: int = 0
    synced: int = 0
    not_due: int = 0
    unscheduled: int = 0
    caught_up: int = 0
    deferred: int = 0
    failed: int = 0
    added: int = 0
    modified: int = 0
    removed: int = 0
    events_published: int = 0
    events_failed: int = 0
    stopped_for_time: bool = False
    duration_ms: int = 0


class _Run:
    def __init__(self, services: SyncServices, policy: SyncPolicy, remaining_ms: Callable[[], int], run_id: str):
        self.services, self.policy, self.remaining_ms = services, policy, remaining_ms
        self.summary = SyncSummary(run_id=run_id)
        self._started = time.perf_counter()
        self._lock = threading.Lock()  # the summary's counts, from the pool's threads

    def count(self, **increments: int) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self.summary, name, getattr(self.summary, name) + value)

    def seconds_left(self) -> float:
        return self.remaining_ms() / 1000 - self.policy.time_reserve_seconds

    def out_of_time(self) -> bool:
        return self.seconds_left() <= 0

    # -- plan (fan-out) -----------------------------------------------------------------------------------------

    def plan(self, shards: list[int]) -> list[int]:
        """Which shards this invocation syncs; the others go to the fan-out queue, each group one invocation's."""
        fanout = self.services.fanout
        if fanout is None:
            return shards
        store, now = self.services.accounts.transactions, self.services.accounts.connections.clock.now()
        run_id = self.summary.run_id
        plan = plan_fanout(
            shards,
            count_due=lambda shard: store.count_due_syncs(shard, due_before=now),
            capacity=capacity(self.policy.rate_per_second, self.seconds_left()),
            queue=fanout,
            request=lambda group: FanoutRequest(shards=group, run_id=run_id, requested_at=now),
            work="syncs",
        )
        self.summary.fanned_out = plan.fanned_out
        return plan.local

    # -- sync -----------------------------------------------------------------------------------------------------

    def shards(self, shards: Iterable[int]) -> None:
        """Sync the due connections of ``shards`` in turn, until the time left is spent."""
        slots = threading.BoundedSemaphore(self.policy.workers)
        with ThreadPoolExecutor(max_workers=self.policy.workers, thread_name_prefix="sync") as pool:
            for shard in shards:
                self.summary.shards.append(shard)
                if not self._shard(pool, slots, shard):
                    self.summary.stopped_for_time = True
                    break

    def _shard(self, pool: ThreadPoolExecutor, slots: threading.BoundedSemaphore, shard: int) -> bool:
        """Submit the shard's due connections (at most ``workers`` unfinished at once); ``False``: out of time."""
        store = self.services.accounts.transactions
        now = self.services.accounts.connections.clock.now()
        try:
            for due in store.due_syncs(shard, due_before=now, page_size=self.policy.page_size):
                slots.acquire()
                if self.out_of_time():
                    slots.release()
                    logger.info("time budget spent; the remaining due syncs wait for the next run")
                    return False
                self.count(seen=1)
                future = pool.submit(self._guarded, due)
                future.add_done_callback(lambda _done: slots.release())
        except errors.AispError:
            logger.exception("querying due syncs failed", shard=shard)
            with self._lock:
                self.summary.failed_shards.append(shard)
        return True

    def _guarded(self, due: DueSync) -> None:
        try:
            outcome = self.one(due)
        except Exception:  # noqa: BLE001 - one connection's failure must not stop the run
            logger.exception("sync of a connection failed unexpectedly", bank_code=due.bank_code)
            outcome = "failed"
        self.count(**{outcome: 1})

    def one(self, due: DueSync) -> str:
        """Sync one connection if it is ACTIVE and still due; what happened."""
        accounts = self.services.accounts
        store, clock = accounts.transactions, accounts.connections.clock
        connection = accounts.connections.connections.find(due.user_id, due.bank_code)
        if (
            connection is None
            or connection.connection_id != due.connection_id
            or connection.status is not ConnectionStatus.ACTIVE
        ):
            # Not to sync until the connect flow makes it ACTIVE again (which schedules it anew)
            return "unscheduled" if store.unschedule_sync(due) else "not_due"
        now = clock.now()
        following = next_slot(connection.connection_id, now, self.policy.runs_per_day)
        if not store.claim_sync(connection.connection_id, now=now, next_at=following):
            return "not_due"
        key = ConnectionKey(due.user_id, due.bank_code)
        try:
            result = sync_connection(
                key.user_id,
                key.bank_code,
                services=accounts,
                owner=self.summary.run_id,
                fresh_since=previous_slot(connection.connection_id, now, self.policy.runs_per_day),
            )
        except errors.QuotaExhaustedError as exc:
            logger.info("sync deferred: the day's quota is spent", bank_code=key.bank_code)
            self._failed(connection, exc, now)
            # Its first slot of the next Paris day
            store.defer_sync(
                connection.connection_id, at=next_slot(connection.connection_id, exc.retry_at, self.policy.runs_per_day)
            )
            return "deferred"
        except (errors.UpstreamError, errors.ConflictError, errors.PersistenceError, errors.KeyServiceError) as exc:
            logger.warning("sync failed; retried later", bank_code=key.bank_code, error_type=type(exc).__name__)
            store.defer_sync(connection.connection_id, at=min(following, now + self.policy.retry_after))
            self._failed(connection, exc, now)
            return "deferred"
        except errors.AispError as exc:  # not usable any more (reauth, deleted meanwhile): the next run sees it
            logger.info("sync skipped", bank_code=key.bank_code, error_type=type(exc).__name__)
            return "not_due"
        self.count(added=result.added, modified=result.modified, removed=result.removed)
        for changed in result.per_account:
            self._publish(
                LifecycleEventType.TRANSACTIONS_UPDATED,
                SyncDetail(
                    connection_id=connection.connection_id,
                    user_id=key.user_id,
                    bank_code=key.bank_code,
                    account_id=changed.account_id,
                    added=changed.added,
                    modified=changed.modified,
                    removed=changed.removed,
                    occurred_at=now,
                ),
            )
        return "synced"

    # -- catch-up ---------------------------------------------------------------------------------------------------

    def catch_up(self) -> None:
        """With time to spare: each ``RefreshDueIndex`` shard not walked yet this Paris day, walked for ACTIVE
        connections the due index does not hold (connections older than it, or a schedule write that failed)."""
        clock = self.services.accounts.connections.clock
        for shard in range(REFRESH_SHARDS):
            if self.out_of_time():
                return
            now = clock.now()
            try:
                if not self.services.accounts.transactions.claim_catchup(
                    shard, now=now, next_at=quota_resets_at(paris_day(now))
                ):
                    continue
                keys = list(self.services.keys.due_keys(shard, due_before=_ALL))
            except errors.AispError:
                logger.exception("sync catch-up failed", shard=shard)
                return
            with ThreadPoolExecutor(max_workers=self.policy.workers, thread_name_prefix="sync-catchup") as pool:
                caught = sum(pool.map(self._catch_up_one, keys))
            self.count(caught_up=caught)
            logger.info("sync catch-up walked a shard", shard=shard, connections=len(keys), scheduled=caught)

    def _catch_up_one(self, key: ConnectionKey) -> int:
        if self.out_of_time():
            return 0
        try:
            connection = self.services.accounts.connections.connections.find(key.user_id, key.bank_code)
            if connection is None or connection.status is not ConnectionStatus.ACTIVE:
                return 0
            now = self.services.accounts.connections.clock.now()
            return int(
                self.services.accounts.transactions.schedule_sync(
                    connection.connection_id,
                    user_id=key.user_id,
                    bank_code=key.bank_code,
                    at=next_slot(connection.connection_id, now, self.policy.runs_per_day),
                    only_if_unscheduled=True,
                )
            )
        except errors.AispError:
            logger.exception("sync catch-up of a connection failed", bank_code=key.bank_code)
            return 0

    def _failed(self, connection: Connection, error: errors.AispError, now: datetime) -> None:
        code = next((code for kind, code in _ERROR_CODES if isinstance(error, kind)), "sync_failed")
        detail = SyncDetail(
            connection_id=connection.connection_id,
            user_id=connection.user_id,
            bank_code=connection.bank_code,
            error_code=code,
            occurred_at=now,
        )
        self._publish(LifecycleEventType.SYNC_FAILED, detail)

    def _publish(self, kind: LifecycleEventType, detail: SyncDetail) -> None:
        events = self.services.events
        if events is None:
            return
        try:
            events.publish(LifecycleEvent(detail_type=kind, detail=detail))
        except errors.EventPublishError:
            # The feed is the record; an event is a nudge. Counted, never fatal to the sync.
            logger.warning("sync event not published", detail_type=kind.value)
            self.count(events_failed=1)
        else:
            self.count(events_published=1)

    def finish(self) -> SyncSummary:
        self.summary.duration_ms = int((time.perf_counter() - self._started) * 1000)
        logger.info("sync run", **self.summary.model_dump(exclude={"run_id"}))
        return self.summary


@tracer.capture_method(capture_response=False)
def sync_due_connections(
    *, remaining_ms: Callable[[], int], run_id: str, services: SyncServices, policy: SyncPolicy
) -> SyncSummary:
    """The scheduled run: the due connections of every shard synced once, fanning groups of shards out to the queue
    when one invocation cannot do it all; then, with time to spare, the catch-up."""
    run = _Run(services, policy, remaining_ms, run_id)
    run.shards(run.plan(list(range(policy.shards))))
    if not run.summary.stopped_for_time:
        run.catch_up()
    return run.finish()


@tracer.capture_method(capture_response=False)
def sync_fanout_request(
    request: FanoutRequest,
    *,
    remaining_ms: Callable[[], int],
    run_id: str,
    services: SyncServices,
    policy: SyncPolicy,
) -> SyncSummary:
    """A fan-out worker: the due connections of one queue message's shards, never fanning out again."""
    run = _Run(services, policy, remaining_ms, run_id)
    run.shards([shard for shard in request.shards if 0 <= shard < policy.shards])
    return run.finish()
