"""What changed in one account since the store last saw it: our stable transaction ids, and the diff of a fresh bank
listing against the stored transactions (added, modified, removed; a booked transaction that settles a pending one
names it). Pure functions, no I/O. Design and the rules: ``docs/sync.md`` (Transaction ids; Pending and booked).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Final

from aisp.models.bank import BankTransaction
from aisp.models.sync import ChangeKind, SyncedTransaction, TransactionChange, window_day

__all__ = ["SETTLEMENT_DAYS", "diff_account", "earliest_day", "in_write_order", "transaction_ids"]

# A booked transaction settles a pending one that vanished in the same listing when they agree on currency and
# direction, the booked date is 0 to SETTLEMENT_DAYS after the pending one's, and the amount is the same or (a tip,
# a currency conversion) within SETTLEMENT_AMOUNT_SHARE of it with the same first remittance line.
SETTLEMENT_DAYS: Final = 7
SETTLEMENT_AMOUNT_SHARE: Final = Decimal("0.25")
_PREFIX: Final = "tx_"


def _opaque(*parts: str) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return _PREFIX + base64.b32encode(digest[:15]).decode("ascii").lower()


def _fingerprint(transaction: BankTransaction) -> str:
    """What a transaction is, without the bank's id: status class, amount, currency, dates, remittance."""
    pending = transaction.status == "pending"
    return "\x1e".join(
        (
            "pending" if pending else "settled",
            str(transaction.amount.normalize()),
            transaction.currency,
            transaction.credit_debit,
            str(transaction.booking_date or ""),
            str(transaction.value_date or ""),
            str(transaction.transaction_date or ""),
            "\x1d".join(transaction.remittance),
        )
    )


def transaction_ids(account_id: str, transactions: Sequence[BankTransaction]) -> list[str]:
    """Our id of each transaction of one listing, in order.

    The bank's id (``resourceId``, else ``entryReference``) where it gives one, scoped to the account; else a
    fingerprint of the transaction with its rank among identical ones in the listing (two identical coffees the same
    day stay two). Both are hashed: opaque, the same on every read, never the bank's text.
    """
    ids: list[str] = []
    seen: dict[str, int] = {}
    for transaction in transactions:
        if transaction.id:
            ids.append(_opaque(account_id, "bank", transaction.id))
            continue
        fingerprint = _fingerprint(transaction)
        rank = seen.get(fingerprint, 0)
        seen[fingerprint] = rank + 1
        ids.append(_opaque(account_id, "fingerprint", fingerprint, str(rank)))
    return ids


def _day(transaction: BankTransaction) -> date | None:
    return transaction.booking_date or transaction.value_date or transaction.transaction_date


def _settles(booked: BankTransaction, pending: BankTransaction) -> bool:
    if (booked.currency, booked.credit_debit) != (pending.currency, pending.credit_debit):
        return False
    booked_day, pending_day = _day(booked), pending.transaction_date or _day(pending)
    if (
        booked_day is None
        or pending_day is None
        or not (timedelta(0) <= booked_day - pending_day <= timedelta(days=SETTLEMENT_DAYS))
    ):
        return False
    if booked.amount == pending.amount:
        return True
    same_text = booked.remittance[:1] == pending.remittance[:1] and bool(booked.remittance)
    return same_text and abs(booked.amount - pending.amount) <= abs(pending.amount) * SETTLEMENT_AMOUNT_SHARE


def _in_window(transaction: BankTransaction, window_from: date | None) -> bool:
    """Whether a stored transaction is one the fresh listing covers (older ones age out; they are not removed)."""
    day = window_day(transaction)
    return window_from is None or day is None or day >= window_from


def diff_account(
    account_id: str,
    stored: Mapping[str, SyncedTransaction],
    fresh: Sequence[BankTransaction],
    *,
    window_from: date | None,
) -> list[TransactionChange]:
    """The changes that turn ``stored`` (the account's live transactions by id) into the bank's ``fresh`` listing.

    ``window_from``: the first day the listing covers (``None``: all of history). A stored transaction within it that
    the bank no longer lists is removed; an older one is kept (the bank's history only ages out). A fresh transaction
    whose content changed is modified (the same id). A booked transaction that appears as a pending one of the same
    listing vanishes is added with ``pending_transaction_id``, and the pending one removed (Plaid's way).
    """
    fresh_by_id = dict(zip(transaction_ids(account_id, fresh), fresh, strict=True))
    gone = [
        synced
        for transaction_id, synced in stored.items()
        if transaction_id not in fresh_by_id and _in_window(synced.transaction, window_from)
    ]
    vanished_pending = [synced for synced in gone if synced.transaction.status == "pending"]
    added: list[TransactionChange] = []
    modified: list[TransactionChange] = []
    for transaction_id, transaction in fresh_by_id.items():
        before = stored.get(transaction_id)
        if before is None:
            settled = _settled_pending(transaction, vanished_pending)
            synced = SyncedTransaction(
                transaction_id=transaction_id,
                account_id=account_id,
                pending_transaction_id=None if settled is None else settled.transaction_id,
                transaction=transaction,
            )
            added.append(TransactionChange(ChangeKind.ADDED, account_id, transaction_id, synced))
        elif before.transaction != transaction:
            synced = before.model_copy(update={"transaction": transaction})
            modified.append(TransactionChange(ChangeKind.MODIFIED, account_id, transaction_id, synced))
    removed = [TransactionChange(ChangeKind.REMOVED, account_id, synced.transaction_id, None) for synced in gone]
    return [*removed, *added, *modified]


def _settled_pending(booked: BankTransaction, candidates: list[SyncedTransaction]) -> SyncedTransaction | None:
    """The vanished pending transaction ``booked`` settles (the closest in date), taken out of ``candidates``."""
    if booked.status == "pending":
        return None
    matches = [synced for synced in candidates if _settles(booked, synced.transaction)]
    if not matches:
        return None
    booked_day = _day(booked) or date.min

    def distance(synced: SyncedTransaction) -> tuple[int, Decimal]:
        pending_day = synced.transaction.transaction_date or _day(synced.transaction) or booked_day
        return (booked_day - pending_day).days, abs(booked.amount - synced.transaction.amount)

    best = min(matches, key=distance)
    candidates.remove(best)
    return best


def earliest_day(transaction: BankTransaction) -> date | None:
    """The transaction's earliest date (a bank filters a listing by one of them)."""
    return min(
        (day for day in (transaction.booking_date, transaction.value_date, transaction.transaction_date) if day),
        default=None,
    )


def in_write_order(changes: Sequence[TransactionChange]) -> list[TransactionChange]:
    """By day, removals last: a write that fails midway keeps every change before some day, and a booked transaction
    is never written without the pending one it settles still there to be removed by the next sync."""

    def key(change: TransactionChange) -> tuple[int, date]:
        if change.synced is None:
            return 1, date.max
        return 0, earliest_day(change.synced.transaction) or date.max

    return sorted(changes, key=key)
