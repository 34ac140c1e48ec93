"""Background sync, in the domain's words: a stored transaction with our own stable id, and the changes a sync
reports (added, modified, removed), each numbered in its connection's feed. Design: ``docs/sync.md``.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from enum import StrEnum
from typing import Final, NamedTuple

from pydantic import BaseModel, ConfigDict

from aisp.models.bank import BankTransaction

__all__ = [
    "SYNC_SHARDS",
    "AccountFreshness",
    "ChangeKind",
    "DueSync",
    "FeedEntry",
    "FeedPage",
    "Freshness",
    "StoredAccount",
    "StoredChange",
    "StoredFeedPage",
    "SyncedTransaction",
    "TransactionChange",
    "sync_shard",
    "window_day",
]

# Due syncs are found shard by shard (SyncDueIndex's partition key): 0..SYNC_SHARDS-1.
SYNC_SHARDS: Final = 16


def sync_shard(connection_id: str) -> int:
    """A stable shard in ``[0, SYNC_SHARDS)`` for a connection (SHA-256 of its id, not Python's hash)."""
    return int.from_bytes(hashlib.sha256(connection_id.encode()).digest()[:4], "big") % SYNC_SHARDS


class SyncedTransaction(BaseModel):
    """A transaction as the store keeps it: ``transaction_id`` is ours (stable, opaque; ``docs/sync.md``), and a
    booked transaction that settles a pending one names it in ``pending_transaction_id``."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    transaction_id: str
    account_id: str
    pending_transaction_id: str | None = None
    transaction: BankTransaction


def window_day(transaction: BankTransaction) -> date | None:
    """The day a listing's window is judged by (booking, else value, else transaction date); ``None`` for a pending
    transaction or one without a date, which every window holds (``docs/sync.md``, A sync run)."""
    if transaction.status == "pending":
        return None
    return transaction.booking_date or transaction.value_date or transaction.transaction_date


class ChangeKind(StrEnum):
    """What happened to a transaction since the last sync (Plaid's three lists)."""

    ADDED = "added"
    MODIFIED = "modified"
    REMOVED = "removed"


class TransactionChange(NamedTuple):
    """One change: ``synced`` is the transaction as it now is (``None`` for a removal)."""

    kind: ChangeKind
    account_id: str
    transaction_id: str
    synced: SyncedTransaction | None


class FeedEntry(NamedTuple):
    """A change as the connection's feed numbered it (``seq`` grows with every write, never reused)."""

    seq: int
    change: TransactionChange


class StoredAccount(NamedTuple):
    """An account's transactions as last synced, by ``transaction_id``, and the feed's ``version`` (its last number
    handed out) read before them: a write diffed against them passes it to ``append``, which refuses it once another
    write has begun since (``docs/sync.md``, The store)."""

    transactions: dict[str, SyncedTransaction]
    version: int


class FeedPage(NamedTuple):
    """Changes read from a feed: ``committed`` is its last number, ``synced_at`` when its last write was committed
    (``None``: never written)."""

    entries: list[FeedEntry]
    committed: int
    synced_at: datetime | None


class StoredChange(NamedTuple):
    """A feed entry as the feed route serves it, no model built: ``item`` is its transaction's
    ``SyncedTransactionItem`` JSON text (``aisp.models.accounts.synced_item_json``), ``None`` for a removal
    (``docs/sync.md``, The route)."""

    seq: int
    kind: ChangeKind
    account_id: str
    transaction_id: str
    item: str | None


class StoredFeedPage(NamedTuple):
    """:class:`FeedPage` with its changes as :class:`StoredChange`."""

    entries: list[StoredChange]
    committed: int
    synced_at: datetime | None


class DueSync(NamedTuple):
    """A connection whose sync is due, as the due index gives it: who and which bank (the run needs them to read
    the bank), when it was due (epoch seconds), and ``schedule_id``, which changes each time it is scheduled (so
    taking it out of the index never undoes a newer activation)."""

    connection_id: str
    user_id: str
    bank_code: str
    next_sync_at: int
    schedule_id: str


class Freshness(NamedTuple):
    """When the store last took an account's transactions (or balances) from the bank: ``at`` the read's time,
    ``live`` whether a live read put them there (rather than a sync), ``date_from`` the transactions listing's first
    day (``None`` for balances). A timestamp and a date: nothing of the user's data (``docs/sync.md``, Fresh)."""

    at: datetime
    live: bool
    date_from: date | None = None


class AccountFreshness(NamedTuple):
    """An account's :class:`Freshness`, for its transactions and its balances (``None``: the store keeps none)."""

    transactions: Freshness | None
    balances: Freshness | None
