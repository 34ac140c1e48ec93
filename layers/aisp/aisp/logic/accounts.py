"""On-demand account queries: accounts, balances, transactions (sealed cursors), trusted beneficiaries, identity.

Each use case checks the bank against the registry first (unknown → 404 ``bank_not_found``; a feature the registry
says the bank lacks → 501 ``bank_feature_not_supported``, without calling it), opens a :class:`BankSession` on the
user's connection (404 ``connection_not_found``, 409 ``reauth_required``), calls the bank with the PSU's context
and maps the bank's answer to the normalized models of :mod:`aisp.models.accounts`.

Consent errors, decided here once:

* the bank answers 403 on a resource (balances, transactions, identity, beneficiaries) and **no consent was ever
  submitted through the gateway** for this connection → ``consent_required`` (403): submit one first;
* the bank answers 403 and a consent is on record → ``account_not_consented`` (403): the consent in force does
  not cover this account or data; submit a new one that does.

We do not refuse locally on our consent snapshot: the bank's consent is the one in force (the sandbox's seeded
personas, or a consent the bank kept across a reconnection), so the bank decides and we only name the remedy. A 404
on an account is ``account_not_found``; a 400 on transactions (dates the bank refuses) is ``validation_error``.

Transactions are served in bank pages (100 at BPCE), not re-sliced: without ``limit`` one bank page per call; with
``limit`` at most that many, filled from whole pages, and only when the limit cuts a page does the cursor point
inside it (an offset; that page is fetched again next time). ``all=true`` follows every page while the Lambda's
remaining time allows, up to :data:`ALL_MAX_TRANSACTIONS`, and returns a cursor where it stopped.

A read that has an account's complete listing from a ``date_from`` up to today, or its balances, also goes into the
store when the background sync keeps that account (``aisp.logic.sync.live``), never failing the read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Final, NamedTuple

from aisp import errors
from aisp.banks import Bank
from aisp.cursors import CursorPosition
from aisp.logic.bank_calls import BankSession, open_session
from aisp.logic.quota import QuotaMeter
from aisp.logic.refresh.on_demand import not_usable
from aisp.logic.services import AccountServices
from aisp.models.accounts import (
    BalanceItem,
    BankAccountItem,
    BeneficiaryItem,
    IdentityResponse,
    ListAccountsResponse,
    TransactionItem,
    TransactionsResponse,
)
from aisp.models.connection import Connection, ConnectionStatus
from aisp.models.psu import PsuInfo
from aisp.models.quota import paris_day
from aisp.observability import logger, tracer

if TYPE_CHECKING:
    from concurrent.futures import Future

    from aisp.logic.sync.live import LiveStore
    from aisp.models.bank import BankTransaction

__all__ = [
    "ALL_MAX_TRANSACTIONS",
    "AllAccountsResult",
    "TransactionQuery",
    "consent_error",
    "get_balances",
    "get_identity",
    "get_transactions",
    "get_trusted_beneficiaries",
    "list_accounts",
    "list_all_accounts",
]

# all=true stops here (and returns a cursor): about 2.5 MB of JSON, well under Lambda's 6 MB response limit.
ALL_MAX_TRANSACTIONS: Final = 5000
# Never more bank pages than this in one request (the client's own safety limit).
MAX_PAGES_PER_REQUEST: Final = 50
# Fetch another page only if at least max(this, twice the slowest page so far) remains of the invocation.
MIN_TIME_RESERVE_MS: Final = 3000
# STET 1.4.0 had no GET /end-user-identity: the PSU's name comes as connectedPsu on GET /accounts.
_LEGACY_IDENTITY_VERSION: Final = "1.4.0"


# A NamedTuple and plain classes rather than dataclasses: this module is imported at cold start, where each
# dataclass costs about a millisecond to create.
class TransactionQuery(NamedTuple):
    """What the client asked for. ``date_to`` is inclusive here (STET's ``dateTo`` is exclusive)."""

    date_from: date | None = None
    date_to: date | None = None
    cursor: str | None = None
    limit: int | None = None
    all_pages: bool = False


class AllAccountsResult:
    """``GET /v1/accounts``: the accounts read, and the banks that failed with their error."""

    __slots__ = ("accounts", "failures")

    def __init__(self) -> None:
        self.accounts: list[BankAccountItem] = []
        self.failures: list[tuple[str, Exception]] = []


def consent_error(connection: Connection, cause: errors.UpstreamError) -> errors.ConsentRejectedError:
    """The error for a bank 403 on data: ``consent_required`` without a consent on record, else not consented."""
    details = {"bank_code": connection.bank_code, "status": cause.status}
    if connection.consent is None:
        return errors.ConsentRequiredError("no consent was submitted for this connection", details=details)
    return errors.ConsentRejectedError("the consent in force does not cover this data", details=details)


@contextmanager
def _bank_errors(session: BankSession, *, account: bool = False, bad_request: str | None = None) -> Iterator[None]:
    """Translate what the bank said into what the client can act on (see the module docstring)."""
    try:
        yield
    except errors.BankAccessDeniedError as exc:
        raise consent_error(session.connection, exc) from exc
    except errors.BankNotFoundError as exc:
        if not account:
            raise
        raise errors.AccountNotFoundError(
            "the bank knows no such account", details={"bank_code": exc.bank_code}
        ) from exc
    except errors.BankNotImplementedError as exc:
        raise errors.BankFeatureNotSupportedError(
            "the bank does not implement this feature", details={"bank_code": exc.bank_code}
        ) from exc
    except errors.BankClientError as exc:
        # Only the plain class: its subclasses (401, 403, 404, 429, invalid_grant) carry their own meaning.
        if bad_request is None or type(exc) is not errors.BankClientError or exc.status != HTTPStatus.BAD_REQUEST:
            raise
        raise errors.InvalidRequestError(bad_request, details={"bank_code": exc.bank_code}) from exc


def _registered(services: AccountServices, bank_code: str) -> Bank:
    return services.connections.registry.get(bank_code)


def _unsupported(bank: Bank, feature: str) -> errors.BankFeatureNotSupportedError:
    return errors.BankFeatureNotSupportedError(
        "this bank does not offer this feature", details={"bank_code": bank.bank_code, "feature": feature}
    )


# ----------------------------------------------------------------------------------------------------------------
# Accounts and balances
# ----------------------------------------------------------------------------------------------------------------


@tracer.capture_method(capture_response=False)
def list_accounts(
    user_id: str, bank_code: str, *, psu: PsuInfo | None, services: AccountServices, meter: QuotaMeter | None = None
) -> ListAccountsResponse:
    """The user's accounts at ``bank_code`` (before any consent: listed without balances or links).

    Raises
    ------
    UnknownBankError, ConnectionNotFoundError, ReauthRequiredError, UpstreamError
        See the module docstring.
    """
    _registered(services, bank_code)
    session = open_session(user_id, bank_code, services, attended=psu is not None, read_only=True, meter=meter)
    with _bank_errors(session):
        accounts = session.call(
            "get_accounts", lambda token: services.bank.get_accounts(bank_code, access_token=token, psu=psu)
        )
    return ListAccountsResponse.from_bank(bank_code, accounts, session.connection.consent)


@tracer.capture_method(capture_response=False)
def get_balances(
    user_id: str,
    bank_code: str,
    account_id: str,
    *,
    psu: PsuInfo | None,
    services: AccountServices,
    meter: QuotaMeter | None = None,
) -> list[BalanceItem]:
    """The balances of one account.

    Raises
    ------
    ConsentRequiredError, ConsentRejectedError
        The bank answered 403 (see the module docstring).
    AccountNotFoundError
        The bank answered 404.
    """
    _registered(services, bank_code)
    session = open_session(user_id, bank_code, services, attended=psu is not None, read_only=True, meter=meter)
    kept = _live_store(services, session, account_id)
    with _bank_errors(session, account=True):
        balances = session.call(
            "get_balances",
            lambda token: services.bank.get_balances(bank_code, access_token=token, account_id=account_id, psu=psu),
            account_id=account_id,
        )
    kept.keep_balances(session.connection.connection_id, balances, now=services.connections.clock.now())
    return [BalanceItem.from_bank(balance) for balance in balances]


def _live_store(services: AccountServices, session: BankSession, account_id: str) -> LiveStore:
    """The store side of a live read, its read started beside the bank call (the sync's modules on first use)."""
    from aisp.logic.sync.live import LiveStore  # noqa: PLC0415 - not at init: diff, sync models

    return LiveStore(services, session.connection, account_id)


# ----------------------------------------------------------------------------------------------------------------
# Transactions
# ----------------------------------------------------------------------------------------------------------------


def _check_history(bank: Bank, query: TransactionQuery, today: date) -> None:
    """A ``date_from`` older than the bank keeps is refused, naming the limit (the bank would silently serve less)."""
    days = bank.capabilities.history_days
    earliest = today - timedelta(days=days)
    if query.date_from is not None and query.date_from < earliest:
        raise errors.InvalidRequestError(
            f"date_from is older than the {days} days of transactions this bank keeps: the earliest is {earliest}",
            details={"field": "date_from", "history_days": days, "earliest": earliest.isoformat()},
        )


def _check_query(query: TransactionQuery) -> None:
    if query.cursor is not None and (query.date_from is not None or query.date_to is not None):
        raise errors.InvalidRequestError(
            "cursor already carries the dates; do not combine it with date_from or date_to", details={"field": "cursor"}
        )
    if query.all_pages and query.limit is not None:
        raise errors.InvalidRequestError("all=true and limit cannot be combined", details={"field": "limit"})
    if query.date_from is not None and query.date_to is not None and query.date_from > query.date_to:
        raise errors.InvalidRequestError("date_from must not be after date_to", details={"field": "date_from"})


def _complete_from(query: TransactionQuery, now: datetime) -> date | None:
    """The first day of the complete listing the query reads if it reaches the last page (``None``: not one)."""
    if query.cursor is not None or query.date_from is None:
        return None  # the common pages decided without importing the sync's modules
    from aisp.logic.sync.live import complete_from  # noqa: PLC0415

    return complete_from(date_from=query.date_from, date_to=query.date_to, cursor=None, today=paris_day(now))


class _Pager:
    """Collects transactions from consecutive bank pages within an item and a time budget."""

    __slots__ = (
        "account_id",
        "bank_items",
        "items",
        "max_items",
        "psu",
        "remaining_ms",
        "services",
        "session",
        "slowest_ms",
    )

    def __init__(
        self,
        *,
        session: BankSession,
        services: AccountServices,
        account_id: str,
        psu: PsuInfo | None,
        max_items: int | None,  # None: exactly one bank page
        remaining_ms: Callable[[], int] | None,
    ) -> None:
        self.session, self.services, self.account_id, self.psu = session, services, account_id, psu
        self.max_items, self.remaining_ms = max_items, remaining_ms
        self.items: list[TransactionItem] = []
        self.bank_items: list[BankTransaction] = []  # the same, as the bank listed them (for the store)
        self.slowest_ms = 0.0

    def run(self, start: CursorPosition) -> CursorPosition | None:
        """Collect into ``items``; return where to continue, or ``None`` when the bank has no more."""
        position, seen, pages = start, set[str](), 0
        while True:
            page_items, bank_items, next_url = self._fetch(position)
            pages += 1
            if position.page_url is not None:
                seen.add(position.page_url)
            fresh = page_items[position.skip :]
            room = None if self.max_items is None else self.max_items - len(self.items)
            if room is not None and len(fresh) > room:
                self.items += fresh[:room]
                return position._replace(skip=position.skip + room)  # the limit cut this page: resume inside it
            self.items += fresh
            self.bank_items += bank_items[position.skip :]
            if next_url is None or next_url in seen:
                return None
            following = CursorPosition(page_url=next_url)
            if self.max_items is None or len(self.items) >= self.max_items or pages >= MAX_PAGES_PER_REQUEST:
                return following
            if not self._time_for_another_page():
                logger.info("time budget reached; returning a cursor", pages=pages, transactions=len(self.items))
                return following
            position = following

    def _fetch(self, position: CursorPosition) -> tuple[list[TransactionItem], Sequence[BankTransaction], str | None]:
        bank_code, bank = self.session.bank_code, self.services.bank
        started = time.perf_counter()
        page = self.session.call(
            "get_transactions",
            lambda token: bank.get_transactions_page(
                bank_code,
                access_token=token,
                account_id=self.account_id,
                psu=self.psu,
                date_from=position.date_from,
                date_to=position.date_to,
                page_url=position.page_url,
            ),
            account_id=self.account_id,
            counted=position.page_url is None,  # a next page is free at the bank ("hors pagination")
        )
        self.slowest_ms = max(self.slowest_ms, (time.perf_counter() - started) * 1000)
        items = [TransactionItem.from_bank(transaction) for transaction in page.transactions]
        return items, page.transactions, page.next_page_url

    def _time_for_another_page(self) -> bool:
        if self.remaining_ms is None:
            return True
        return self.remaining_ms() >= max(MIN_TIME_RESERVE_MS, 2 * self.slowest_ms)


@tracer.capture_method(capture_response=False)
def get_transactions(
    user_id: str,
    bank_code: str,
    account_id: str,
    query: TransactionQuery,
    *,
    psu: PsuInfo | None,
    remaining_ms: Callable[[], int] | None = None,
    services: AccountServices,
    meter: QuotaMeter | None = None,
    owner: str | None = None,
) -> TransactionsResponse:
    """Transactions of one account, newest first as the bank serves them, with a sealed ``next_cursor``.

    Parameters
    ----------
    query
        Dates (first call) or a cursor (next calls), ``limit`` or ``all_pages``.
    remaining_ms
        The invocation's remaining time (``context.get_remaining_time_in_millis``); bounds multi-page requests.
    owner
        Who writes the store when the read is a complete listing of a synced account (the request id; default: a
        random one).

    Raises
    ------
    InvalidRequestError
        Conflicting parameters, a ``date_from`` older than the registry's ``history_days`` for the bank (the message
        names the limit and the earliest date); :class:`~aisp.errors.InvalidCursorError` for a cursor that does not
        open.
    ConsentRequiredError, ConsentRejectedError, AccountNotFoundError
        See the module docstring.
    """
    bank = _registered(services, bank_code)
    _check_query(query)
    now = services.connections.clock.now()
    _check_history(bank, query, now.date())
    bound = {"user_id": user_id, "bank_code": bank_code, "account_id": account_id}
    if query.cursor is not None:
        start = services.cursors().open(query.cursor, now=now, **bound)
    else:
        # Our date_to is inclusive; STET's dateTo is exclusive (and 9999-12-31 has no day after it: no bound).
        date_to = query.date_to + timedelta(days=1) if query.date_to is not None and query.date_to < date.max else None
        start = CursorPosition(page_url=None, date_from=query.date_from, date_to=date_to)
    session = open_session(user_id, bank_code, services, attended=psu is not None, read_only=True, meter=meter)
    listing_from = _complete_from(query, now)
    kept = None if listing_from is None else _live_store(services, session, account_id)
    max_items = ALL_MAX_TRANSACTIONS if query.all_pages else query.limit
    pager = _Pager(
        session=session,
        services=services,
        account_id=account_id,
        psu=psu,
        max_items=max_items,
        remaining_ms=remaining_ms if max_items is not None else None,
    )
    with _bank_errors(session, account=True, bad_request="the bank refused the transaction query"):
        following = pager.run(start)
    if kept is not None and listing_from is not None and following is None:
        import uuid  # noqa: PLC0415 - only for a complete listing without a request id

        kept.keep_listing(
            session.connection.connection_id,
            pager.bank_items,
            date_from=listing_from,
            owner=owner or f"live-{uuid.uuid4()}",
            now=now,
        )
    next_cursor = None if following is None else services.cursors().seal(following, now=now, **bound)
    return TransactionsResponse(transactions=pager.items, next_cursor=next_cursor)


# ----------------------------------------------------------------------------------------------------------------
# Trusted beneficiaries and identity
# ----------------------------------------------------------------------------------------------------------------


@tracer.capture_method(capture_response=False)
def get_trusted_beneficiaries(
    user_id: str, bank_code: str, *, psu: PsuInfo | None, services: AccountServices, meter: QuotaMeter | None = None
) -> list[BeneficiaryItem]:
    """The user's trusted beneficiaries (none → empty list).

    Raises
    ------
    BankFeatureNotSupportedError
        The registry says this bank has no trusted-beneficiaries list (the bank is not called).
    """
    bank = _registered(services, bank_code)
    if not bank.capabilities.trusted_beneficiaries:
        raise _unsupported(bank, "trusted_beneficiaries")
    session = open_session(user_id, bank_code, services, attended=psu is not None, read_only=True, meter=meter)
    with _bank_errors(session):
        found = session.call(
            "get_trusted_beneficiaries",
            lambda token: services.bank.get_trusted_beneficiaries(bank_code, access_token=token, psu=psu),
        )
    return [BeneficiaryItem.from_bank(beneficiary) for beneficiary in found]


@tracer.capture_method(capture_response=False)
def get_identity(
    user_id: str, bank_code: str, *, psu: PsuInfo | None, services: AccountServices, meter: QuotaMeter | None = None
) -> IdentityResponse:
    """The connected PSU's identity: GET /end-user-identity, or ``connectedPsu`` of GET /accounts on STET 1.4.0.

    Raises
    ------
    BankFeatureNotSupportedError
        The registry says this bank does not give the identity (the bank is not called).
    """
    bank = _registered(services, bank_code)
    if not bank.capabilities.identity:
        raise _unsupported(bank, "identity")
    session = open_session(user_id, bank_code, services, attended=psu is not None, read_only=True, meter=meter)
    with _bank_errors(session):
        if bank.stet_version.startswith(_LEGACY_IDENTITY_VERSION):
            accounts = session.call(
                "get_accounts", lambda token: services.bank.get_accounts(bank_code, access_token=token, psu=psu)
            )
            if not accounts.connected_psu:  # the bank adds it only when psuIdentity is consented
                raise errors.BankAccessDeniedError(
                    "bank gave no connectedPsu", bank_code=bank_code, details={"operation": "get_accounts"}
                )
            return IdentityResponse(full_name=accounts.connected_psu, first_name=None, last_name=None, name_prefix=None)
        identity = session.call(
            "get_end_user_identity",
            lambda token: services.bank.get_end_user_identity(bank_code, access_token=token, psu=psu),
        )
    if identity is None:
        return IdentityResponse(full_name=None, first_name=None, last_name=None, name_prefix=None)
    return IdentityResponse.from_bank(identity)


# ----------------------------------------------------------------------------------------------------------------
# Every bank at once
# ----------------------------------------------------------------------------------------------------------------


@tracer.capture_method(capture_response=False)
def list_all_accounts(
    user_id: str, *, psu: PsuInfo | None, services: AccountServices, meter: QuotaMeter | None = None
) -> AllAccountsResult:
    """The accounts of every ACTIVE connection of the user, banks called concurrently (a small thread pool).

    A bank that fails (reauth needed, rate limited, down...) becomes a failure entry; the others are still listed.
    Every other connection but a deleted one is a failure entry too, with the error its status maps to
    (``reauth_required``, ``completion_required``...), without calling its bank: none is silently left out.
    """
    now = services.connections.clock.now()
    connections = [
        connection.as_of(now)
        for connection in services.connections.connections.list_for_user(user_id)
        if connection.status is not ConnectionStatus.REVOKED
    ]
    active = [connection for connection in connections if connection.status is ConnectionStatus.ACTIVE]
    result = AllAccountsResult()
    result.failures.extend((c.bank_code, not_usable(c)) for c in connections if c.status is not ConnectionStatus.ACTIVE)
    if not active:
        return result
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - only this route uses threads

    worker = tracer.in_worker_thread(list_accounts)
    with ThreadPoolExecutor(max_workers=min(services.max_workers, len(active)), thread_name_prefix="bank") as pool:
        futures: list[tuple[str, Future[ListAccountsResponse]]] = [
            (c.bank_code, pool.submit(worker, user_id, c.bank_code, psu=psu, services=services, meter=meter))
            for c in active
        ]
    for bank_code, future in futures:
        try:
            listed = future.result()
        except errors.AispError as exc:
            logger.info("bank failed in the all-accounts listing", bank_code=bank_code, error_type=type(exc).__name__)
            result.failures.append((bank_code, exc))
        except Exception as exc:  # one bank's bug must not hide the others' accounts
            logger.exception("unexpected error in the all-accounts listing", bank_code=bank_code)
            result.failures.append((bank_code, exc))
        else:
            result.accounts.extend(BankAccountItem.at_bank(bank_code, account) for account in listed.accounts)
    return result
