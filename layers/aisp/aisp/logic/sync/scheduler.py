"""The scheduled sync: every ACTIVE connection synced at its own times of the Paris day, ``runs_per_day`` times at
most, on a bounded thread pool within the invocation's time.

A connection's slots split its Paris day in ``runs_per_day`` equal parts, shifted by an offset of its own (a hash of
its id), so the connections of a deployment spread over the day. A run claims a due connection (one conditional write:
two runs never sync one connection at once) and sets its next slot before it reads the bank; a failure defers it a
little, an exhausted quota to the next Paris day. The connections come from ``RefreshDueIndex`` (every connection with
a refresh token), shard by shard. Design: ``docs/sync.md`` (The schedule).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

from pydantic import BaseModel, ConfigDict

from aisp import errors
from aisp.logic.ports import EventPublisher, RefreshRepository
from aisp.logic.services import AccountServices
from aisp.logic.sync.run import sync_connection
from aisp.models.connection import Connection, ConnectionStatus
from aisp.models.quota import paris_day, quota_day_seconds, quota_resets_at
from aisp.models.refresh import REFRESH_SHARDS, ConnectionKey, LifecycleEvent, LifecycleEventType, SyncDetail
from aisp.observability import logger, tracer

__all__ = ["SyncPolicy", "SyncServices", "SyncSummary", "next_slot", "previous_slot", "sync_due_connections"]

# Every key of a shard, whatever its refresh time: the index's range key is epoch seconds.
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
    shards: int = REFRESH_SHARDS


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncServices:
    """The account services a sync uses, the repository whose index lists the connections, and the fintech's bus
    (``TransactionsUpdated``, ``SyncFailed``; ``None``: no events)."""

    accounts: AccountServices
    keys: RefreshRepository
    events: EventPublisher | None = None


class SyncSummary(BaseModel):
    """What one run did (logged, returned by the handler; counts only)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    seen: int = 0
    synced: int = 0
    not_due: int = 0
    deferred: int = 0
    failed: int = 0
    added: int = 0
    modified: int = 0
    removed: int = 0
    events_published: int = 0
    events_failed: int = 0
    stopped_for_time: bool = False
    duration_ms: int = 0


def _slots(connection_id: str, day: date, runs_per_day: int) -> Iterator[datetime]:
    """The connection's sync times in a Paris day, exact: its offset into each of the day's equal parts."""
    fraction = int.from_bytes(hashlib.sha256(connection_id.encode()).digest()[:8], "big") / 2**64
    length = quota_day_seconds(day)
    start = quota_resets_at(day) - timedelta(seconds=length)
    part = length / runs_per_day
    for index in range(runs_per_day):
        yield start + timedelta(seconds=part * (index + fraction))


def _rounded(slot: datetime) -> datetime:
    return slot.replace(microsecond=0) + timedelta(seconds=1)


def next_slot(connection_id: str, now: datetime, runs_per_day: int) -> datetime:
    """The connection's first sync time after ``now``: its offset into one of the Paris day's equal parts."""
    day = paris_day(now)
    for candidate_day in (day, day + timedelta(days=1)):
        for slot in _slots(connection_id, candidate_day, runs_per_day):
            if slot > now:
                return _rounded(slot)
    raise AssertionError("a day always has a slot after now")  # pragma: no cover


def previous_slot(connection_id: str, now: datetime, runs_per_day: int) -> datetime:
    """The connection's sync time before the last one due by ``now``: what a live read stored since then is fresh
    enough for the sync now due (``docs/sync.md``, Live reads)."""
    day = paris_day(now)
    past = [
        _rounded(slot)
        for candidate_day in (day - timedelta(days=2), day - timedelta(days=1), day)
        for slot in _slots(connection_id, candidate_day, runs_per_day)
        if _rounded(slot) <= now
    ]
    return past[-2]


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

    def out_of_time(self) -> bool:
        return self.remaining_ms() < self.policy.time_reserve_seconds * 1000

    def one(self, key: ConnectionKey) -> str:
        """Sync one connection if it is ACTIVE and due; what happened."""
        accounts = self.services.accounts
        connection = accounts.connections.connections.find(key.user_id, key.bank_code)
        if connection is None or connection.status is not ConnectionStatus.ACTIVE:
            return "not_due"
        store, clock = accounts.transactions, accounts.connections.clock
        now = clock.now()
        following = next_slot(connection.connection_id, now, self.policy.runs_per_day)
        if not store.claim_sync(connection.connection_id, now=now, next_at=following):
            return "not_due"
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


@tracer.capture_method(capture_response=False)
def sync_due_connections(
    *, remaining_ms: Callable[[], int], run_id: str, services: SyncServices, policy: SyncPolicy
) -> SyncSummary:
    """One scheduled run over every shard: each due ACTIVE connection synced once."""
    run = _Run(services, policy, remaining_ms, run_id)
    with ThreadPoolExecutor(max_workers=policy.workers, thread_name_prefix="sync") as pool:
        for shard in range(policy.shards):
            if run.out_of_time():
                run.summary.stopped_for_time = True
                break
            keys = list(services.keys.due_keys(shard, due_before=_ALL))
            run.summary.seen += len(keys)
            for outcome in pool.map(_guarded(run), keys):
                run.count(**{outcome: 1})
    run.summary.duration_ms = int((time.perf_counter() - run._started) * 1000)
    logger.info("sync run", **run.summary.model_dump(exclude={"run_id"}))
    return run.summary


def _guarded(run: _Run) -> Callable[[ConnectionKey], str]:
    def guarded(key: ConnectionKey) -> str:
        if run.out_of_time():
            return "not_due"
        try:
            return run.one(key)
        except Exception:
            logger.exception("sync of a connection failed unexpectedly", bank_code=key.bank_code)
            return "failed"

    return guarded
