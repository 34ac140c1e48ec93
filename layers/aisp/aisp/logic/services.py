"""What the use cases run against: their ports and settings, passed in by the handlers (built by ``aisp.wiring``).

Tests build their own instead (``tests/use_cases.py``: the in-memory repositories, fakes of the banks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from aisp.banks import BankRegistry
from aisp.clock import Clock, SystemClock
from aisp.logic.ports import (
    AccountDataGateway,
    BankGateway,
    ConnectionRepository,
    EventPublisher,
    OAuthStateRepository,
    QuotaLedger,
    TransactionStore,
)
from aisp.logic.remembered import RememberedConnections
from aisp.return_urls import AllowedPrefix

if TYPE_CHECKING:
    from aisp.cursors import CursorSealer
    from aisp.idempotency import IdempotencyStore

__all__ = ["AccountServices", "ConnectPolicy", "ConnectionServices"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionServices:
    """Ports and storage-wide settings of the connection use cases."""

    connections: ConnectionRepository
    states: OAuthStateRepository
    bank: BankGateway
    registry: BankRegistry
    clock: Clock = field(default_factory=SystemClock)
    # Days between strong authentications (REAUTH_DAYS), further capped by each bank's refresh_token_days.
    reauth_days: int = 90
    # How long a REVOKED record stays before its TTL purge.
    revoked_retention: timedelta = timedelta(days=30)
    # How long the app has to complete a login the bank authorized (COMPLETION_TTL_SECONDS).
    completion_ttl: timedelta = timedelta(minutes=5)
    # Where keyed writes (Idempotency-Key) are recorded, called on the first one; None: keyed writes are refused.
    idempotency: Callable[[], IdempotencyStore] | None = None
    # The synced transactions, forgotten with their connection, and the sync's due index a connection made ACTIVE
    # enters (None: this function holds none).
    transactions: TransactionStore | None = None
    # SyncRunsPerDay: a connection made ACTIVE is first synced at its first slot of those.
    sync_runs_per_day: int = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectPolicy:
    """How journeys start (connect function only)."""

    return_urls: tuple[AllowedPrefix, ...]
    state_ttl: timedelta = timedelta(minutes=10)
    # The registered redirect_uri; empty = https://{API domain of the request}/oauth/callback.
    callback_url: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountServices:
    """Ports of the consent and account-query use cases, on top of the connection services (tokens, registry)."""

    connections: ConnectionServices
    bank: AccountDataGateway
    # Called on the first cursor of a request: only transaction paging pays for the key (one KMS call a container).
    cursors: Callable[[], CursorSealer]
    # Today's unattended reads per account and method: reserved before every unattended bank call.
    quota: QuotaLedger
    # The synced transactions and their change feed (docs/sync.md).
    transactions: TransactionStore
    # Banks queried at once by GET /v1/accounts.
    max_workers: int = 4
    # Connections this container read, so that a read-only bank call overlaps the next read (None: never overlap).
    remembered: RememberedConnections | None = None
    # The fintech's bus, for the TransactionsUpdated of a live read that wrote changes (docs/sync.md, Events): asked
    # for on the first such event, so its settings and adapter load then. None (or None from it): no events.
    events: Callable[[], EventPublisher | None] | None = None
