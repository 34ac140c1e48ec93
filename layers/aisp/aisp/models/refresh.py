"""Domain models of the token refresher (issue 6): a leased connection and the lifecycle events for the fintech.

Events carry who and when, never tokens: ``connection_id``, ``user_id``, ``bank_code``, ``reauth_due_at`` and, for
``ConnectionExpiring``, the threshold reached and the days left.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Final, Literal, NamedTuple

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from aisp.models.connection import Connection, TokenPair

__all__ = [
    "REFRESH_SHARDS",
    "ConnectionKey",
    "ConnectionLifecycleDetail",
    "FanoutRequest",
    "LeasedConnection",
    "LifecycleEvent",
    "LifecycleEventType",
    "ReauthNotice",
    "SyncDetail",
    "refresh_shard",
]

# Due connections are found shard by shard (RefreshDueIndex's partition key): 0..REFRESH_SHARDS-1.
REFRESH_SHARDS: Final = 16


def refresh_shard(user_id: str, bank_code: str) -> int:
    """A stable shard in ``[0, REFRESH_SHARDS)`` for a connection (SHA-256 of user + bank, not Python's hash)."""
    digest = hashlib.sha256(f"{user_id}\x00{bank_code}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % REFRESH_SHARDS


class ConnectionKey(NamedTuple):
    """The table key of a connection (what ``RefreshDueIndex``'s keys-only projection gives back)."""

    user_id: str
    bank_code: str


class ReauthNotice(StrEnum):
    """Where the ``ConnectionReauthRequired`` event of a REAUTH_REQUIRED connection stands."""

    PENDING = "PENDING"  # to send: the record stays in RefreshDueIndex (due now) until the refresher sends it
    SENT = "SENT"


class LeasedConnection(BaseModel):
    """A connection whose refresh lease the caller holds, read by the very write that took the lease.

    ``tokens`` is ``None`` when the record has none (a REAUTH_REQUIRED record with a pending notice) or when its
    blob does not authenticate for this record (``tokens_unreadable``: tampered or moved; never decrypted).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    connection: Connection
    tokens: TokenPair | None
    # The tokens of an authorization awaiting completion (the connection's ``pending``), decrypted.
    pending_tokens: TokenPair | None = None
    tokens_unreadable: bool = False
    lease_owner: str
    lease_until: int
    refresh_due_at: int | None = None
    refresh_failures: Annotated[int, Field(ge=0)] = 0
    expiry_notices: frozenset[int] = frozenset()
    reauth_notice: ReauthNotice | None = None


class LifecycleEventType(StrEnum):
    """``detail-type`` of the events published to the fintech's EventBridge bus."""

    CONNECTION_EXPIRING = "ConnectionExpiring"
    CONNECTION_REAUTH_REQUIRED = "ConnectionReauthRequired"
    # The background sync (docs/sync.md): what changed in one account, or why a connection's sync failed.
    TRANSACTIONS_UPDATED = "TransactionsUpdated"
    SYNC_FAILED = "SyncFailed"


class ConnectionLifecycleDetail(BaseModel):
    """The ``detail`` of a lifecycle event: identifiers and dates only."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    connection_id: str
    user_id: str
    bank_code: str
    reauth_due_at: AwareDatetime | None
    days_left: int | None = Field(default=None, description="whole days until reauth_due_at (expiring only)")
    threshold_days: int | None = Field(default=None, description="the notice threshold reached (expiring only)")
    occurred_at: AwareDatetime


class SyncDetail(BaseModel):
    """The ``detail`` of a sync event: identifiers and counts, never a transaction."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    connection_id: str
    user_id: str
    bank_code: str
    account_id: str | None = Field(default=None, description="TransactionsUpdated: the account whose feed changed")
    added: int = 0
    modified: int = 0
    removed: int = 0
    error_code: str | None = Field(default=None, description="SyncFailed: the error's code (bank_unavailable...)")
    trigger: Literal["schedule", "live"] = Field(
        default="schedule", description="what read the bank: the scheduled sync, or a live read that stored its changes"
    )
    occurred_at: AwareDatetime


class LifecycleEvent(BaseModel):
    """One event for the fintech's bus."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    detail_type: LifecycleEventType
    detail: ConnectionLifecycleDetail | SyncDetail


class FanoutRequest(BaseModel):
    """One SQS message of a fan-out: the shards one worker invocation refreshes (or syncs)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    shards: Annotated[tuple[Annotated[int, Field(ge=0, le=255)], ...], Field(min_length=1)]
    run_id: Annotated[str, Field(min_length=1, max_length=100)]
    requested_at: AwareDatetime
