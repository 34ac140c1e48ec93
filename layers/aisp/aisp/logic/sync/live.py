"""A live read keeps the store fresh: the complete transactions listing (or the balances) the user's app or the
backend just read from the bank goes into the store of an account a sync keeps, so the feed has its changes at once
and the next sync need not read it again (``aisp.logic.sync.run``'s ``fresh_since``).

Changes written are announced on the fintech's bus like a sync's (``TransactionsUpdated``, ``trigger: live``).

Best effort: a conflict with another writer, a store or a key failure is logged (no data) and the read answers as if
nothing were stored; the next sync catches up. An event the bus refuses is logged too, never failing the read.
Design: ``docs/sync.md`` (Live reads, Events).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

from aisp import errors
from aisp.logic.services import AccountServices
from aisp.logic.sync.diff import diff_account, in_write_order
from aisp.models.sync import AccountFreshness, ChangeKind, Freshness, SyncedTransaction
from aisp.observability import logger, tracer

if TYPE_CHECKING:
    from concurrent.futures import Future
    from datetime import datetime

    from aisp.models.bank import BankBalance, BankTransaction
    from aisp.models.connection import Connection

__all__ = ["LiveStore", "complete_from"]

# What never fails a live read: another writer, the store, the key (its KMS call, or a blob that does not open).
_STORE_FAILURES = (errors.ConflictError, errors.PersistenceError, errors.TokenCryptoError)


def complete_from(*, date_from: date | None, date_to: date | None, cursor: str | None, today: date) -> date | None:
    """The first day of the account's complete listing a transactions query reads if it reaches the bank's last page:
    its ``date_from`` when it has no cursor and no ``date_to`` before ``today``. ``None``: it is not one (a cursor
    continues another read; without ``dateFrom`` STET leaves the listing to the bank, so we cannot say what a
    transaction missing from it means)."""
    if cursor is not None or date_from is None or (date_to is not None and date_to < today):
        return None
    return date_from


def _covers(stored: dict[str, SyncedTransaction], date_from: date) -> bool:
    """Whether a listing from ``date_from`` covers every pending transaction kept: the diff counts a pending one
    missing from the listing as removed (released or booked), so none may lie before its first day."""
    for synced in stored.values():
        transaction = synced.transaction
        if transaction.status != "pending":
            continue
        days = [day for day in (transaction.transaction_date, transaction.value_date, transaction.booking_date) if day]
        if days and min(days) < date_from:
            return False
    return True


class LiveStore:
    """The store side of one live read of one account: what the store keeps of it, read beside the bank call (on the
    remembered connections' pool, when there is one), then what the read brought written there if a sync keeps it."""

    __slots__ = ("_account_id", "_bank_code", "_connection_id", "_reading", "_services", "_user_id")

    def __init__(self, services: AccountServices, connection: Connection, account_id: str) -> None:
        self._services, self._connection_id, self._account_id = services, connection.connection_id, account_id
        self._user_id, self._bank_code = connection.user_id, connection.bank_code
        memory = services.remembered
        self._reading: Future[AccountFreshness] | None = None
        if memory is not None:
            read = tracer.in_worker_thread(self._read)
            self._reading = memory.submit(read)

    def _read(self) -> AccountFreshness:
        return self._services.transactions.freshness(self._connection_id, self._account_id)

    def _known(self, connection_id: str) -> AccountFreshness | None:
        """What the store keeps of the account (``None``: unknown, the read failed). ``connection_id`` is the one
        the bank call confirmed: another than the one read beside it (a connection made again) is read now."""
        try:
            if self._reading is not None and connection_id == self._connection_id:
                return self._reading.result()
            self._connection_id = connection_id
            return self._read()
        except _STORE_FAILURES as exc:
            _not_kept("read", exc)
            return None

    def keep_listing(
        self,
        connection_id: str,
        transactions: Sequence[BankTransaction],
        *,
        date_from: date,
        owner: str,
        now: datetime,
    ) -> None:
        """Diff the account's complete listing from ``date_from`` (read at ``now``) into the store and note it, if a
        sync keeps the account's transactions; written under ``owner`` only if no write began since the store was
        read. Changes committed are announced (``TransactionsUpdated``), even if noting the listing then fails."""
        known = self._known(connection_id)
        if known is None or known.transactions is None:
            return  # never synced: starting a store is the sync's (its first read is the whole history)
        store, account_id = self._services.transactions, self._account_id
        committed: list[ChangeKind] = []
        try:
            stored = store.live(connection_id, account_id)
            if not _covers(stored.transactions, date_from):
                logger.info("live read not stored: it starts after a pending transaction kept")
                return
            changes = in_write_order(diff_account(account_id, stored.transactions, transactions, window_from=date_from))
            if changes:
                store.append(connection_id, changes, owner=owner, now=now, expected=stored.version)
                committed = [change.kind for change in changes]
            store.note_listing(connection_id, account_id, Freshness(now, live=True, date_from=date_from))
        except _STORE_FAILURES as exc:
            _not_kept("transactions", exc)
        else:
            logger.info(
                "live read stored",
                added=committed.count(ChangeKind.ADDED),
                modified=committed.count(ChangeKind.MODIFIED),
                removed=committed.count(ChangeKind.REMOVED),
            )
        if committed:
            self._announce(connection_id, committed, now)

    def _announce(self, connection_id: str, kinds: list[ChangeKind], now: datetime) -> None:
        """``TransactionsUpdated`` for the changes committed, as a sync's (counts, no data); a failure is logged."""
        events = None if self._services.events is None else self._services.events()
        if events is None:
            return
        from aisp.models.refresh import LifecycleEvent, LifecycleEventType, SyncDetail  # noqa: PLC0415

        detail = SyncDetail(
            connection_id=connection_id,
            user_id=self._user_id,
            bank_code=self._bank_code,
            account_id=self._account_id,
            added=kinds.count(ChangeKind.ADDED),
            modified=kinds.count(ChangeKind.MODIFIED),
            removed=kinds.count(ChangeKind.REMOVED),
            trigger="live",
            occurred_at=now,
        )
        try:
            events.publish(LifecycleEvent(detail_type=LifecycleEventType.TRANSACTIONS_UPDATED, detail=detail))
        except errors.EventPublishError as exc:
            # The feed is the record; an event is a nudge: never fatal to the read.
            logger.warning(
                "live read event not published",
                detail_type=LifecycleEventType.TRANSACTIONS_UPDATED.value,
                error_code=exc.details.get("error_code"),
            )

    def keep_balances(self, connection_id: str, balances: Sequence[BankBalance], *, now: datetime) -> None:
        """Replace the account's kept balances with these (read at ``now``), if a sync keeps them."""
        known = self._known(connection_id)
        if known is None or known.balances is None:
            return
        try:
            self._services.transactions.put_balances(connection_id, self._account_id, balances, now=now, live=True)
        except _STORE_FAILURES as exc:
            _not_kept("balances", exc)


def _not_kept(what: str, exc: errors.AispError) -> None:
    logger.warning(
        "live read not stored; the next sync catches up",
        what=what,
        error_type=type(exc).__name__,
        operation=exc.details.get("operation"),
    )
