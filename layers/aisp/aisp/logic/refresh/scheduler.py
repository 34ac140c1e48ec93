"""The scheduled token refresher: every due connection refreshed by the refresh engine, concurrently, at any scale.

One run finds the due connections in ``RefreshDueIndex`` shard by shard (no Scan), fans shard groups out to the SQS
queue when they are more than this invocation can refresh before its timeout, takes each connection's lease and lets
:class:`.engine.RefreshEngine` refresh it on a bounded thread pool, publishes the lifecycle events it finds due
(``ConnectionReauthRequired``, ``ConnectionExpiring``), and reports metrics and one summary line. Transient bank
errors are backed off and counted; anything else also raises one :class:`~aisp.errors.TokenRefreshBatchError` at
the end. Design, outcomes and backoff: ``docs/refresh.md``.
"""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field

from aisp.banks import BankRegistry
from aisp.clock import Clock, SystemClock, epoch
from aisp.errors import (
    AispError,
    BankRateLimitedError,
    BankUnavailableError,
    ClientCredentialsRejectedError,
    EventPublishError,
    TokenRefreshBatchError,
)
from aisp.logic.fanout import capacity, plan_fanout
from aisp.logic.ports import BankGateway, EventPublisher, FanoutQueue, RefreshRepository
from aisp.logic.refresh.engine import Refresh, RefreshEngine, RefreshOutcome
from aisp.logic.revocation import end_authorization
from aisp.models.connection import Connection, ConnectionStatus, StatusReason
from aisp.models.refresh import (
    REFRESH_SHARDS,
    ConnectionKey,
    ConnectionLifecycleDetail,
    FanoutRequest,
    LeasedConnection,
    LifecycleEvent,
    LifecycleEventType,
    ReauthNotice,
)
from aisp.observability import logger, metrics, tracer

__all__ = [
    "RefreshPolicy",
    "RefreshSummary",
    "RefresherServices",
    "next_attempt_at",
    "refresh_due_connections",
    "refresh_fanout_request",
]

_MIN_RETRY: Final = timedelta(seconds=60)
_DAY_SECONDS: Final = 86_400


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshPolicy:
    """How a run behaves (defaults = the template's; see :class:`~aisp.settings.RefresherSettings`)."""

    margin: timedelta = timedelta(minutes=10)
    workers: int = 32
    lease_seconds: int = 60
    time_reserve_seconds: float = 20.0
    rate_per_second: int = 200
    backoff_base_seconds: int = 300
    backoff_max_seconds: int = 3600
    notice_days: tuple[int, ...] = (14, 7, 1)
    shards: int = REFRESH_SHARDS
    page_size: int = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class RefresherServices:
    """The ports a run uses; ``fanout`` ``None`` = never fan out."""

    connections: RefreshRepository
    bank: BankGateway
    events: EventPublisher
    registry: BankRegistry
    fanout: FanoutQueue | None = None
    clock: Clock = field(default_factory=SystemClock)
    rng: random.Random = field(default_factory=random.Random)


class RefreshSummary(BaseModel):
    """What one run did (logged, returned by the handler; ids only, never tokens)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    shards: list[int]
    fanned_out: list[list[int]] = Field(default_factory=list)
    attempted: int = 0
    refreshed: int = 0
    reauth_required: int = 0
    transient_failures: int = 0
    failed: int = 0
    skipped: int = 0
    authorizations_ended: int = 0
    events_published: int = 0
    stopped_for_time: bool = False
    duration_ms: int = 0
    failed_ids: list[str] = Field(default_factory=list)


class _Outcome(StrEnum):
    REFRESHED = "refreshed"
    REAUTH_REQUIRED = "reauth_required"
    TRANSIENT = "transient"
    FAILED = "failed"
    SKIPPED = "skipped"  # leased elsewhere, refreshed already, changed meanwhile, or only a notice to send
    AUTHORIZATION_ENDED = "authorization_ended"  # a login not completed in time: revoked and forgotten


# ----------------------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------------------


@tracer.capture_method(capture_response=False)
def refresh_due_connections(
    *,
    remaining_ms: Callable[[], int],
    run_id: str,
    services: RefresherServices,
    policy: RefreshPolicy,
) -> RefreshSummary:
    """The scheduled run: every shard, fanning out to the queue when one invocation cannot do it all.

    Parameters
    ----------
    remaining_ms
        The invocation's clock (``context.get_remaining_time_in_millis``).
    run_id
        Identifies the run in lease owners, fan-out messages and logs (the Lambda request id).

    Raises
    ------
    TokenRefreshBatchError
        At the end, when some connection failed unexpectedly (or the fan-out could not be sent).
    """
    run = _Run(services, policy, remaining_ms, run_id)
    shards = list(range(run.policy.shards))
    local = run.plan(shards)
    return run.finish(local)


@tracer.capture_method(capture_response=False)
def refresh_fanout_request(
    request: FanoutRequest,
    *,
    remaining_ms: Callable[[], int],
    run_id: str,
    services: RefresherServices,
    policy: RefreshPolicy,
) -> RefreshSummary:
    """A fan-out worker: the shards of one queue message, never fanning out again.

    Raises
    ------
    TokenRefreshBatchError
        At the end, when some connection failed unexpectedly.
    """
    run = _Run(services, policy, remaining_ms, run_id)
    shards = [shard for shard in request.shards if 0 <= shard < run.policy.shards]
    return run.finish(shards)


def next_attempt_at(
    now: datetime,
    failures: int,
    *,
    policy: RefreshPolicy,
    access_expires_at: datetime | None,
    reauth_due_at: datetime | None,
    retry_after: int | None = None,
    jitter: float = 1.0,
) -> datetime:
    """When to try a connection again after its ``failures``-th consecutive transient failure.

    ``min(base * 2**(failures-1), max)`` scaled by ``jitter`` (in [0.5, 1]), then brought forward so it is never
    after the access token still in use expires nor after ``reauth_due_at`` (a later attempt could only find a
    dead connection), then never sooner than the bank's ``Retry-After`` nor than a minute from now.
    """
    delay = min(policy.backoff_max_seconds, policy.backoff_base_seconds * 2 ** max(0, failures - 1)) * jitter
    at = now + timedelta(seconds=delay)
    for bound in (access_expires_at, reauth_due_at):
        if bound is not None and bound > now:
            at = min(at, bound)
    if retry_after is not None:
        at = max(at, now + timedelta(seconds=min(retry_after, policy.backoff_max_seconds)))
    return max(at, now + _MIN_RETRY)


# ----------------------------------------------------------------------------------------------------------------
# One run
# ----------------------------------------------------------------------------------------------------------------


class _Run:
    """State of one invocation's run: counters (thread-safe), clock, budget."""

    def __init__(
        self, services: RefresherServices, policy: RefreshPolicy, remaining_ms: Callable[[], int], run_id: str
    ) -> None:
        self.services = services
        self.policy = policy
        self.engine = RefreshEngine(services.connections, services.bank, services.clock)
        self.remaining_ms = remaining_ms
        self.summary = RefreshSummary(run_id=run_id, shards=[])
        self._lock = threading.Lock()
        self._sequence = itertools.count(1)
        self._started = time.monotonic()

    # -- budget and counters ------------------------------------------------------------------------------------

    def seconds_left(self) -> float:
        return self.remaining_ms() / 1000 - self.policy.time_reserve_seconds

    def owner(self) -> str:
        with self._lock:
            return f"refresher:{self.summary.run_id}:{next(self._sequence)}"

    def count(self, outcome: _Outcome, connection_id: str | None = None) -> None:
        with self._lock:
            summary = self.summary
            if outcome is _Outcome.REFRESHED:
                summary.refreshed += 1
            elif outcome is _Outcome.REAUTH_REQUIRED:
                summary.reauth_required += 1
            elif outcome is _Outcome.TRANSIENT:
                summary.transient_failures += 1
            elif outcome is _Outcome.FAILED:
                summary.failed += 1
                summary.failed_ids.append(connection_id or "unknown")
            elif outcome is _Outcome.AUTHORIZATION_ENDED:
                summary.authorizations_ended += 1
            else:
                summary.skipped += 1

    def event_published(self) -> None:
        with self._lock:
            self.summary.events_published += 1

    def failure_without_connection(self, what: str) -> None:
        with self._lock:
            self.summary.failed += 1
            self.summary.failed_ids.append(what)

    # -- plan (fan-out) -----------------------------------------------------------------------------------------

    def plan(self, shards: list[int]) -> list[int]:
        """Which shards this invocation refreshes; the others go to the fan-out queue."""
        fanout = self.services.fanout
        if fanout is None:
            return shards
        due_before = epoch(self.services.clock.now() + self.policy.margin)
        plan = plan_fanout(
            shards,
            count_due=lambda shard: self.services.connections.count_due(shard, due_before=due_before),
            capacity=capacity(self.policy.rate_per_second, self.seconds_left()),
            queue=fanout,
            request=lambda group: FanoutRequest(
                shards=group, run_id=self.summary.run_id, requested_at=self.services.clock.now()
            ),
            work="connections",
        )
        if plan.send_failed:
            self.failure_without_connection("fanout")
        self.summary.fanned_out = plan.fanned_out
        return plan.local

    # -- refresh ------------------------------------------------------------------------------------------------

    def finish(self, shards: list[int]) -> RefreshSummary:
        """Refresh ``shards``, then report (metrics, log) and raise if anything failed unexpectedly."""
        self.summary.shards = list(shards)
        self._refresh_shards(shards)
        self.summary.duration_ms = int((time.monotonic() - self._started) * 1000)
        self._report()
        if self.summary.failed_ids:
            raise TokenRefreshBatchError(list(self.summary.failed_ids), details={"run_id": self.summary.run_id})
        return self.summary

    def _refresh_shards(self, shards: Iterable[int]) -> None:
        workers = self.policy.workers
        # At most `workers` refreshes submitted and unfinished: all of them run, none waits in a queue, so a run
        # that stops for time only waits for calls already in flight (each bounded by the bank timeout).
        slots = threading.BoundedSemaphore(workers)
        # Worker threads trace under this invocation's segment (the X-Ray SDK keeps it in a thread-local).
        task = tracer.in_worker_thread(self._refresh_one)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="refresh") as pool:
            for shard in shards:
                if not self._submit_shard(pool, slots, shard, task):
                    self.summary.stopped_for_time = True
                    break

    def _submit_shard(
        self,
        pool: ThreadPoolExecutor,
        slots: threading.BoundedSemaphore,
        shard: int,
        task: Callable[[ConnectionKey], None],
    ) -> bool:
        due_before = epoch(self.services.clock.now() + self.policy.margin)
        try:
            for key in self.services.connections.due_keys(
                shard, due_before=due_before, page_size=self.policy.page_size
            ):
                slots.acquire()
                if self.seconds_left() <= 0:
                    slots.release()
                    logger.info("time budget spent; the remaining due connections wait for the next run")
                    return False
                with self._lock:
                    self.summary.attempted += 1
                future = pool.submit(task, key)
                future.add_done_callback(lambda _done: slots.release())
        except AispError:
            logger.exception("querying due connections failed", shard=shard)
            self.failure_without_connection(f"shard-{shard}")
        return True

    def _refresh_one(self, key: ConnectionKey) -> None:
        """One connection, from lease to release; never raises (STYLE §5: log, count, carry on)."""
        owner = self.owner()
        connection_id: str | None = None
        try:
            leased = self.services.connections.acquire_lease(
                key,
                owner=owner,
                now=self.services.clock.now(),
                lease_seconds=self.policy.lease_seconds,
                due_before=epoch(self.services.clock.now() + self.policy.margin),
            )
            if leased is None:
                self.count(_Outcome.SKIPPED)
                return
            connection_id = leased.connection.connection_id
            outcome = self._refresh_leased(key, leased, owner)
            self.count(outcome, connection_id)
            if outcome in {_Outcome.REFRESHED, _Outcome.TRANSIENT, _Outcome.FAILED}:
                self._send_expiring(key, leased)
        except Exception:  # noqa: BLE001 - one connection's failure must not stop the batch
            logger.exception("token refresh failed unexpectedly", connection_id=connection_id, bank_code=key.bank_code)
            self.count(_Outcome.FAILED, connection_id or f"{key.bank_code}:unknown")
            self.engine.release(key, owner)

    def _refresh_leased(self, key: ConnectionKey, leased: LeasedConnection, owner: str) -> _Outcome:
        verdict = self._triage(key, leased, owner)
        if verdict is not None:
            return verdict
        result = self.engine.refresh(leased.connection, leased.tokens, owner=owner)
        if result.outcome is RefreshOutcome.REFRESHED:
            return _Outcome.REFRESHED
        if result.outcome is RefreshOutcome.REAUTH_REQUIRED:
            return self._reauth_marked(key, result.connection)
        if result.outcome is RefreshOutcome.FAILED:
            return self._failed(key, leased, owner, result)
        logger.info("connection changed during refresh", connection_id=leased.connection.connection_id)
        return _Outcome.SKIPPED

    def _failed(self, key: ConnectionKey, leased: LeasedConnection, owner: str, result: Refresh) -> _Outcome:
        """The bank failed without refusing the grant: back off (transient) or count a failure, tokens kept."""
        exc = result.error
        if isinstance(exc, (BankRateLimitedError, BankUnavailableError)):
            retry_after = exc.retry_after if isinstance(exc, BankRateLimitedError) else None
            error = str(exc.details.get("failure") or exc.status or "unavailable")
            return self._failure(key, leased, owner, error=error, outcome=_Outcome.TRANSIENT, retry_after=retry_after)
        if isinstance(exc, ClientCredentialsRejectedError):
            # Our configuration, not the user's refresh token: never wipe tokens, alert through the failure count.
            logger.error("bank refused our client credentials", bank_code=key.bank_code, status=exc.status)
            return self._failure(key, leased, owner, error="invalid_client", outcome=_Outcome.FAILED)
        logger.warning(
            "token refresh failed",
            connection_id=leased.connection.connection_id,
            bank_code=key.bank_code,
            error=type(exc).__name__,
        )
        return self._failure(key, leased, owner, error=type(exc).__name__, outcome=_Outcome.FAILED)

    def _lifecycle(self, key: ConnectionKey, leased: LeasedConnection, owner: str) -> _Outcome | None:
        """The transitions a deadline makes (and the notice left to send); ``None`` = an ACTIVE record to refresh."""
        connection = leased.connection
        now = self.services.clock.now()
        if connection.pending is not None and connection.pending.expires_at <= now:
            return self._end_authorization(key, leased, owner)
        if connection.status is ConnectionStatus.REAUTH_REQUIRED and leased.reauth_notice is ReauthNotice.PENDING:
            self._send_reauth_notice(key)  # marked by an on-demand refresh; only the event is left to do
            return _Outcome.SKIPPED
        if connection.status is not ConnectionStatus.ACTIVE:
            self.engine.release(key, owner)
            return _Outcome.SKIPPED
        if connection.reauth_due(now):
            return self._reauth_marked(key, self.engine.mark_reauth(connection, reason=StatusReason.REAUTH_DUE))
        return None

    def _triage(self, key: ConnectionKey, leased: LeasedConnection, owner: str) -> _Outcome | None:
        """What to do with a leased record before calling the bank; ``None`` = refresh it."""
        verdict = self._lifecycle(key, leased, owner)
        if verdict is not None:
            return verdict
        connection = leased.connection
        if leased.tokens_unreadable:
            logger.error("stored tokens do not authenticate", connection_id=connection.connection_id)
            return self._failure(key, leased, owner, error="token_integrity", outcome=_Outcome.FAILED)
        return None

    def _end_authorization(self, key: ConnectionKey, leased: LeasedConnection, owner: str) -> _Outcome:
        """A login authorized at the bank but not completed in time: its tokens revoked there and forgotten here."""
        connection = leased.connection
        end_authorization(
            self.services.connections,
            self.services.bank,
            self.services.registry.get(key.bank_code),
            connection,
            leased.pending_tokens,
            reason=StatusReason.COMPLETION_EXPIRED,
            now=self.services.clock.now(),
        )
        self.engine.release(key, owner)
        return _Outcome.AUTHORIZATION_ENDED

    def _failure(
        self,
        key: ConnectionKey,
        leased: LeasedConnection,
        owner: str,
        *,
        error: str,
        outcome: _Outcome,
        retry_after: int | None = None,
    ) -> _Outcome:
        """Keep the tokens, count the failure on the item, push the next attempt, release the lease."""
        now = self.services.clock.now()
        failures = leased.refresh_failures + 1
        connection = leased.connection
        at = next_attempt_at(
            now,
            failures,
            policy=self.policy,
            access_expires_at=connection.access_expires_at,
            reauth_due_at=connection.reauth_due_at,
            retry_after=retry_after,
            jitter=0.5 + self.services.rng.random() / 2,
        )
        # The record becomes due again when `at` is within the margin of a run's clock, i.e. at `at` exactly.
        self.services.connections.record_refresh_failure(
            key, owner=owner, failures=failures, error=error, next_due_at=epoch(at + self.policy.margin)
        )
        logger.info(
            "token refresh will be retried",
            connection_id=connection.connection_id,
            bank_code=key.bank_code,
            error=error,
            failures=failures,
            next_attempt_at=at.isoformat(),
        )
        return outcome

    def _reauth_marked(self, key: ConnectionKey, marked: Connection | None) -> _Outcome:
        """The engine marked the record REAUTH_REQUIRED (``None``: someone changed it first): tell the fintech."""
        if marked is None:
            return _Outcome.SKIPPED
        self._send_reauth_notice(key)
        return _Outcome.REAUTH_REQUIRED

    # -- lifecycle events ---------------------------------------------------------------------------------------

    def _send_reauth_notice(self, key: ConnectionKey) -> None:
        now = self.services.clock.now()
        connection = self.services.connections.claim_reauth_notice(key, now=now)
        if connection is None:
            return  # someone else sent it
        event = LifecycleEvent(
            detail_type=LifecycleEventType.CONNECTION_REAUTH_REQUIRED,
            detail=_detail(connection, now),
        )
        try:
            self.services.events.publish(event)
        except EventPublishError:
            logger.exception("reauth event not published; retried next run", connection_id=connection.connection_id)
            self.services.connections.restore_reauth_notice(key, retry_due_at=epoch(now))
            self.count(_Outcome.FAILED, connection.connection_id)
            return
        self.event_published()

    def _send_expiring(self, key: ConnectionKey, leased: LeasedConnection) -> None:
        connection = leased.connection
        if connection.reauth_due_at is None:
            return
        now = self.services.clock.now()
        left = connection.reauth_due_at - now
        reached = {days for days in self.policy.notice_days if left <= timedelta(days=days)}
        pending = reached - leased.expiry_notices
        if not pending or not self.services.connections.claim_expiry_notices(key, pending):
            return
        threshold = min(pending)  # skipped thresholds (a run missed for days) are recorded, not sent late
        event = LifecycleEvent(
            detail_type=LifecycleEventType.CONNECTION_EXPIRING,
            detail=_detail(
                connection,
                now,
                days_left=max(0, math.ceil(left.total_seconds() / _DAY_SECONDS)),
                threshold_days=threshold,
            ),
        )
        try:
            self.services.events.publish(event)
        except EventPublishError:
            logger.exception("expiring event not published; retried next run", connection_id=connection.connection_id)
            self.services.connections.release_expiry_notices(key, pending)
            self.count(_Outcome.FAILED, connection.connection_id)
            return
        self.event_published()

    # -- helpers ------------------------------------------------------------------------------------------------

    def _report(self) -> None:
        summary = self.summary
        metrics.add_metric(name="TokensRefreshed", unit=MetricUnit.Count, value=summary.refreshed)
        metrics.add_metric(name="ReauthRequired", unit=MetricUnit.Count, value=summary.reauth_required)
        metrics.add_metric(
            name="TokenRefreshFailed", unit=MetricUnit.Count, value=summary.transient_failures + summary.failed
        )
        metrics.add_metric(name="LifecycleEventsPublished", unit=MetricUnit.Count, value=summary.events_published)
        metrics.add_metric(name="RefreshDuration", unit=MetricUnit.Milliseconds, value=summary.duration_ms)
        logger.info("token refresh run finished", **summary.model_dump(exclude={"failed_ids"}))


def _detail(
    connection: Connection, now: datetime, *, days_left: int | None = None, threshold_days: int | None = None
) -> ConnectionLifecycleDetail:
    return ConnectionLifecycleDetail(
        connection_id=connection.connection_id,
        user_id=connection.user_id,
        bank_code=connection.bank_code,
        reauth_due_at=connection.reauth_due_at,
        days_left=days_left,
        threshold_days=threshold_days,
        occurred_at=now,
    )
