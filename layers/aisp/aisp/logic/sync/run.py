"""One sync of one connection, without the user: the consented accounts' transactions read unattended (each first
page within the bank's daily quota, ``aisp.logic.quota``), diffed against the store and written to its feed.

A first sync reads the bank's whole history; later ones from a few days before the oldest pending transaction kept
(or ``RESYNC_DAYS`` back), which is where bookings and releases happen, and from the newest transaction kept: changes
are written oldest first, so a write that failed midway kept a prefix, and what it did not write is read again. What
a live read stored since ``fresh_since`` (``aisp.logic.sync.live``) is not read again. Design: ``docs/sync.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Final, NamedTuple

from aisp import errors
from aisp.logic.bank_calls import BankSession, open_session
from aisp.logic.ports import TransactionStore
from aisp.logic.services import AccountServices
from aisp.logic.sync.diff import SETTLEMENT_DAYS, diff_account, earliest_day, in_write_order, transaction_ids
from aisp.logic.sync.purge import purge_accounts_not_in
from aisp.models.bank import BankAccount, BankBalance, BankTransaction, TransactionsPage
from aisp.models.connection import CardReference, ConsentSnapshot
from aisp.models.quota import paris_day
from aisp.models.sync import ChangeKind, Freshness, StoredAccount, SyncedTransaction, TransactionChange
from aisp.observability import logger

__all__ = ["RESYNC_DAYS", "AccountChanges", "SyncResult", "is_fresh", "sync_connection"]

# How far back a later sync reads (besides the oldest pending transaction kept): late bookings, corrections.
RESYNC_DAYS: Final = 10
# Never more bank pages for one account in one sync (100 transactions each at BPCE: 90 days of a busy account).
MAX_PAGES: Final = 200
# Diffs of one listing against the store before giving up to another writer (each after a new read of the store).
WRITE_ATTEMPTS: Final = 3


class AccountChanges(NamedTuple):
    """What one sync wrote for one account."""

    account_id: str
    added: int
    modified: int
    removed: int


class SyncResult(NamedTuple):
    """What one sync did: accounts read, changes written per kind (and per account), the feed's number after it,
    and the accounts whose transactions a live read had stored fresh (not read again)."""

    accounts: int
    added: int
    modified: int
    removed: int
    committed: int
    per_account: tuple[AccountChanges, ...] = ()
    fresh: int = 0


def is_fresh(freshness: Freshness | None, since: datetime | None, date_from: date | None = None) -> bool:
    """Whether a live read stored the account's data at or after ``since`` (and, for transactions, from a day no
    later than ``date_from``, the window a sync would read): a sync's own read would add nothing then."""
    if freshness is None or since is None or not freshness.live or freshness.at < since:
        return False
    return date_from is None or (freshness.date_from is not None and freshness.date_from <= date_from)


def _consented(account: BankAccount, consent: ConsentSnapshot | None, *, balances: bool = False) -> bool:
    """Whether the consent in force covers the account's transactions (or balances): the bank's link, else our
    record of the consent."""
    if account.resource_id is None:
        return False
    if account.links is not None:
        return account.links.balances if balances else account.links.transactions
    if consent is None:
        return False
    return any(
        (isinstance(item, str) and item == account.iban)
        or (isinstance(item, CardReference) and item.card == account.masked_pan)
        for item in (consent.balances if balances else consent.transactions)
    )


def _window(stored: dict[str, SyncedTransaction], today: date, history_days: int) -> date:
    """The first day to read: the bank's whole history the first time, else the resync span, every pending one and
    the newest kept (after it, a write that failed midway may have left some out)."""
    if not stored:
        return today - timedelta(days=history_days)
    start = today - timedelta(days=RESYNC_DAYS)
    kept = [day for synced in stored.values() if (day := earliest_day(synced.transaction)) is not None]
    if kept:
        start = min(start, max(kept))
    for synced in stored.values():
        transaction = synced.transaction
        if transaction.status == "pending" and transaction.transaction_date is not None:
            start = min(start, transaction.transaction_date - timedelta(days=SETTLEMENT_DAYS))
    return max(start, today - timedelta(days=history_days))


def _listing(
    session: BankSession, services: AccountServices, account_id: str, date_from: date
) -> Sequence[BankTransaction]:
    """Every page of the account's transactions from ``date_from``: one unit of the quota, pages being free."""
    bank_code, found = session.bank_code, list[BankTransaction]()
    page_url: str | None = None
    for _ in range(MAX_PAGES):
        request = functools.partial(
            _page, services, bank_code, account_id=account_id, date_from=date_from, page_url=page_url
        )
        page = session.call("get_transactions", request, account_id=account_id, counted=page_url is None)
        found += page.transactions
        if page.next_page_url is None or page.next_page_url == page_url:
            return found
        page_url = page.next_page_url
    logger.warning("sync stopped at the page limit", bank_code=bank_code, pages=MAX_PAGES)
    return found


def _keep_balances(
    session: BankSession, services: AccountServices, connection_id: str, account: BankAccount, now: datetime
) -> None:
    """Read the account's balances (one ``balances`` unit) and keep them for unattended reads."""
    account_id = account.resource_id or ""
    try:
        balances = session.call(
            "get_balances",
            functools.partial(_balances, services, session.bank_code, account_id=account_id),
            account_id=account_id,
        )
    except (errors.BankAccessDeniedError, errors.BankNotFoundError) as exc:
        # The bank linked them but will not give them: its transactions may still come; nothing is kept.
        logger.info("sync: the bank refused an account's balances", bank_code=session.bank_code, status=exc.status)
        return
    except errors.QuotaExhaustedError:
        # Today's balance reads of this account are spent (the backend read them): the kept ones stay, the
        # transactions still come.
        logger.info("sync: an account's balances are left for tomorrow (quota)", bank_code=session.bank_code)
        return
    services.transactions.remember_account(
        connection_id, account_id, identifier=account.iban or account.masked_pan or ""
    )
    services.transactions.put_balances(connection_id, account_id, balances, now=now)


def _balances(services: AccountServices, bank_code: str, token: str, *, account_id: str) -> list[BankBalance]:
    return services.bank.get_balances(bank_code, access_token=token, account_id=account_id, psu=None)


def _page(
    services: AccountServices, bank_code: str, token: str, *, account_id: str, date_from: date, page_url: str | None
) -> TransactionsPage:
    return services.bank.get_transactions_page(
        bank_code, access_token=token, account_id=account_id, psu=None, date_from=date_from, page_url=page_url
    )


class _Listing(NamedTuple):
    """One account's transactions as the bank listed them from ``date_from``, and the first day of the store's
    window the sync read (``None``: all of it)."""

    account_id: str
    transactions: Sequence[BankTransaction]
    date_from: date
    since: date | None


def _stored_window(
    store: TransactionStore, connection_id: str, account_id: str, today: date, history_days: int
) -> tuple[StoredAccount, date, date | None]:
    """What the store keeps of the account that the sync needs, the first day to read from the bank, and the first
    day of the store's window read (``None``: all of it).

    The resync span's transactions and every pending one first: they give the window (:func:`_window`) whenever the
    newest kept is in the span. If none kept is (a first sync, an account quiet for longer), all of them are read;
    if a pending one takes the window further back, the window's are read again."""
    span = today - timedelta(days=RESYNC_DAYS)
    stored = store.live(connection_id, account_id, since=span)
    if not any((day := earliest_day(s.transaction)) is not None and day >= span for s in stored.transactions.values()):
        stored = store.live(connection_id, account_id)
        return stored, _window(stored.transactions, today, history_days), None
    date_from = _window(stored.transactions, today, history_days)
    if date_from < span:
        return store.live(connection_id, account_id, since=date_from), date_from, date_from
    return stored, date_from, span


def _with_listed(
    store: TransactionStore, connection_id: str, stored: StoredAccount, listing: _Listing
) -> StoredAccount:
    """``stored`` (a window of the store) with the kept transactions the bank listed outside it, read by id: the diff
    then finds every one it would find in the whole store."""
    if listing.since is None:
        return stored
    missing = [i for i in transaction_ids(listing.account_id, listing.transactions) if i not in stored.transactions]
    if not missing:
        return stored
    found = store.stored(connection_id, listing.account_id, missing)
    return StoredAccount({**stored.transactions, **found}, stored.version)


def _write(
    services: AccountServices,
    connection_id: str,
    stored: StoredAccount,
    listing: _Listing,
    *,
    owner: str,
    now: datetime,
) -> tuple[int, list[TransactionChange]]:
    """Diff the listing against the store and append the changes, unless another write began since the store was
    read: then read it again and diff again (no bank call), :data:`WRITE_ATTEMPTS` times at most. So two syncs, or a
    sync and a live read, never report one update twice."""
    store = services.transactions

    def attempt(stored: StoredAccount) -> tuple[int, list[TransactionChange]]:
        stored = _with_listed(store, connection_id, stored, listing)
        changes = in_write_order(
            diff_account(listing.account_id, stored.transactions, listing.transactions, window_from=listing.date_from)
        )
        return store.append(connection_id, changes, owner=owner, now=now, expected=stored.version), changes

    for tried in range(1, WRITE_ATTEMPTS):
        try:
            return attempt(stored)
        except errors.ConflictError:
            logger.info("sync: the store changed while the bank was read; diffing again", attempt=tried)
            stored = store.live(connection_id, listing.account_id, since=listing.since)
    return attempt(stored)


def sync_connection(
    user_id: str, bank_code: str, *, services: AccountServices, owner: str, fresh_since: datetime | None = None
) -> SyncResult:
    """Read the consented accounts' transactions without the user and write what changed to the feed.

    ``fresh_since``: an account's transactions (or balances) a live read stored since then, from a day no later than
    this sync would read, are not read again (no unit spent); ``None``: every account is read.

    Raises
    ------
    ConnectionNotFoundError, ReauthRequiredError, ConnectionNotUsableError
        The connection cannot be used (nothing is read).
    QuotaExhaustedError
        The day's unattended reads are spent for a method or account (what was read before is written).
    ConflictError
        Another sync writes this connection now.
    UpstreamError
        The bank failed (what was read before is written).
    """
    store = services.transactions
    session = open_session(user_id, bank_code, services, attended=False)
    connection = session.connection
    listed = session.call(
        "get_accounts", lambda token: services.bank.get_accounts(bank_code, access_token=token, psu=None)
    )
    accounts = [account for account in listed.accounts if _consented(account, connection.consent)]
    with_balances = [a for a in listed.accounts if _consented(a, connection.consent, balances=True)]
    # What the bank no longer lets us read is not kept either (a consent narrowed at the bank, an account closed)
    purge_accounts_not_in(
        store,
        connection.connection_id,
        transactions=[account.resource_id or "" for account in accounts],
        balances=[account.resource_id or "" for account in with_balances],
    )
    now = services.connections.clock.now()
    # When a live read last stored each account's transactions and balances (read only when a skip is possible)
    known = (
        {}
        if fresh_since is None
        else store.freshness_many(
            connection.connection_id, {account.resource_id or "" for account in (*accounts, *with_balances)}
        )
    )
    for account in with_balances:
        if fresh_since is not None and is_fresh(known[account.resource_id or ""].balances, fresh_since):
            logger.info("sync: an account's balances are fresh from a live read", bank_code=bank_code)
            continue
        _keep_balances(session, services, connection.connection_id, account, now)
    history_days = services.connections.registry.get(bank_code).capabilities.history_days
    counts = dict.fromkeys(ChangeKind, 0)
    committed = 0
    per_account: list[AccountChanges] = []
    stored_live = 0
    for account in accounts:
        account_id = account.resource_id or ""
        stored, date_from, since = _stored_window(
            store, connection.connection_id, account_id, paris_day(now), history_days
        )
        if fresh_since is not None and is_fresh(known[account_id].transactions, fresh_since, date_from):
            stored_live += 1
            continue
        try:
            fresh = _listing(session, services, account_id, date_from)
        except (errors.BankAccessDeniedError, errors.BankNotFoundError) as exc:
            # Linked but refused: nothing to compare with, nothing removed; the other accounts go on.
            logger.info("sync: the bank refused an account's transactions", bank_code=bank_code, status=exc.status)
            continue
        except errors.QuotaExhaustedError:
            # This account's reads are spent today; the others go on (the next slot or day takes it).
            logger.info("sync: an account's transactions are left for later (quota)", bank_code=bank_code)
            continue
        store.remember_account(
            connection.connection_id, account_id, identifier=account.iban or account.masked_pan or ""
        )
        listing = _Listing(account_id, fresh, date_from, since)
        committed, changes = _write(services, connection.connection_id, stored, listing, owner=owner, now=now)
        store.note_listing(connection.connection_id, account_id, Freshness(now, live=False, date_from=date_from))
        kinds = [change.kind for change in changes]
        for kind in ChangeKind:
            counts[kind] += kinds.count(kind)
        if changes:
            per_account.append(
                AccountChanges(
                    account_id,
                    kinds.count(ChangeKind.ADDED),
                    kinds.count(ChangeKind.MODIFIED),
                    kinds.count(ChangeKind.REMOVED),
                )
            )
    logger.info(
        "connection synced",
        bank_code=bank_code,
        accounts=len(accounts),
        added=counts[ChangeKind.ADDED],
        modified=counts[ChangeKind.MODIFIED],
        removed=counts[ChangeKind.REMOVED],
        fresh=stored_live,
    )
    return SyncResult(
        len(accounts),
        counts[ChangeKind.ADDED],
        counts[ChangeKind.MODIFIED],
        counts[ChangeKind.REMOVED],
        committed,
        tuple(per_account),
        stored_live,
    )
