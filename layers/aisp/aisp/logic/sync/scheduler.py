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
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from pydantic import BaseModel, ConfigDict

from aisp import errors
from aisp.logic.ports import RefreshRepository
from aisp.logic.services import AccountServices
from aisp.logic.sync.run import sync_connection
from aisp.models.connection import ConnectionStatus
from aisp.models.quota import paris_day, quota_day_seconds, quota_resets_at
from aisp.models.refresh import REFRESH_SHARDS, ConnectionKey
from aisp.observability import logger, tracer

__all__ = ["SyncPolicy", "SyncServices", "SyncSummary", "next_slot", "sync_due_connections"]

# Every key of a shard, whatever its refresh time: the index's range key is epoch seconds.
_ALL: Final = 2**62


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
    """The account services a sync uses, and the repository whose index lists the connections."""

    accounts: AccountServices
    keys: RefreshRepository


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
    stopped_for_time: bool = False
    duration_ms: int = 0


def next_slot(connection_id: str, now: datetime, runs_per_day: int) -> datetime:
    """The connection's first sync time after ``now``: its offset into one of the Paris day's equal parts."""
    fraction = int.from_bytes(hashlib.sha256(connection_id.encode()).digest()[:8], "big") / 2**64
    day = paris_day(now)
    for candidate_day in (day, day + timedelta(days=1)):
        length = quota_day_seconds(candidate_day)
        start = quota_resets_at(candidate_day) - timedelta(seconds=length)
        part = length / runs_per_day
        for index in range(runs_per_day):
            slot = start + timedelta(seconds=part * (index + fraction))
            if slot > now:
                return slot.replace(microsecond=0) + timedelta(seconds=1)
    raise AssertionError("a day always has a slot after now")  # pragma: no cover


class _Run:
    def __init__(self, services: SyncServices, policy: SyncPolicy, remaining_ms: Callable[[], int], run_id: str):
        self.services, self.policy, self.remaining_ms = services, policy, remaining_ms
        self.summary = SyncSummary(run_id=run_id)
        self._started = time.perf_counter()

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
            result = sync_connection(key.user_id, key.bank_code, services=accounts, owner=self.summary.run_id)
        except errors.QuotaExhaustedError as exc:
            logger.info("sync deferred: the day's quota is spent", bank_code=key.bank_code)
            # Its first slot of the next Paris day
            store.defer_sync(
                connection.connection_id, at=next_slot(connection.connection_id, exc.retry_at, self.policy.runs_per_day)
            )
            return "deferred"
        except (errors.UpstreamError, errors.ConflictError, errors.PersistenceError, errors.KeyServiceError) as exc:
            logger.warning("sync failed; retried later", bank_code=key.bank_code, error_type=type(exc).__name__)
            store.defer_sync(connection.connection_id, at=min(following, now + self.policy.retry_after))
            return "deferred"
        except errors.AispError as exc:  # not usable any more (reauth, deleted meanwhile): the next run sees it
            logger.info("sync skipped", bank_code=key.bank_code, error_type=type(exc).__name__)
            return "not_due"
        self.summary.added += result.added
        self.summary.modified += result.modified
        self.summary.removed += result.removed
        return "synced"


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
                setattr(run.summary, outcome, getattr(run.summary, outcome) + 1)
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
