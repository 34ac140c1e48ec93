"""The small interfaces the use cases depend on (STYLE §2), in the domain's own models (``aisp.models``). Adapters:
``aisp.dal``, ``aisp.stet.gateway``, ``aisp.aws.messaging``; fakes: ``tests/fakes.py``, ``tests/memory.py``."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Final, Protocol

from aisp.models.connection import (
    Completion,
    CompletionOutcome,
    Connection,
    ConsentSnapshot,
    OAuthState,
    PendingAuthorization,
    StatusReason,
    TokenPair,
)
from aisp.models.refresh import ConnectionKey, FanoutRequest, LeasedConnection, LifecycleEvent

if TYPE_CHECKING:
    from datetime import date

    from aisp.models.bank import (
        BankAccounts,
        BankBalance,
        BankBeneficiary,
        BankIdentity,
        IssuedTokens,
        TransactionsPage,
    )
    from aisp.models.psu import PsuInfo
    from aisp.models.quota import QuotaKey, QuotaUsage
    from aisp.models.sync import (
        AccountFreshness,
        DueSync,
        FeedPage,
        Freshness,
        StoredAccount,
        StoredFeedPage,
        SyncedTransaction,
        TransactionChange,
    )

__all__ = [
    "MAX_WRITE_ATTEMPTS",
    "AccountDataGateway",
    "BankGateway",
    "ConnectionRepository",
    "EventPublisher",
    "FanoutQueue",
    "OAuthStateRepository",
    "QuotaLedger",
    "RefreshRepository",
    "TransactionStore",
]


# A use case that lost a conditional write to a concurrent one reads again and retries at most this many times.
MAX_WRITE_ATTEMPTS: Final = 3


class ConnectionRepository(Protocol):
    """Connections; every write is conditional on the version read (see :mod:`aisp.dal.connections`)."""

    def find(self, user_id: str, bank_code: str) -> Connection | None:
        """The user's connection to the bank, or ``None``."""
        ...

    def get_with_tokens(self, user_id: str, bank_code: str) -> tuple[Connection, TokenPair | None]:
        """The connection and its decrypted tokens; raises ``ConnectionNotFoundError``."""
        ...

    def get_with_all_tokens(
        self, user_id: str, bank_code: str
    ) -> tuple[Connection, TokenPair | None, TokenPair | None]:
        """The connection, its serving tokens and those awaiting completion; raises ``ConnectionNotFoundError``."""
        ...

    def list_for_user(self, user_id: str) -> list[Connection]:
        """Every connection of the user."""
        ...

    def find_completion(self, completion_hash: str) -> Completion | None:
        """The completion value stored under this hash, or ``None``."""
        ...

    def create_pending(
        self,
        *,
        user_id: str,
        bank_code: str,
        connection_id: str,
        now: datetime,
        journey_expires_at: datetime | None = None,
    ) -> Connection:
        """Create a PENDING connection; raises ``ConflictError`` if one exists."""
        ...

    def reopen(
        self, connection: Connection, *, now: datetime, journey_expires_at: datetime | None = None
    ) -> Connection:
        """REVOKED or FAILED → PENDING (conditional on the version)."""
        ...

    def note_journey(self, connection: Connection, *, journey_expires_at: datetime) -> bool:
        """A PENDING connection's new login link expires then; ``False`` if it is no longer PENDING."""
        ...

    def fail_journey(self, connection: Connection, *, reason: StatusReason, now: datetime) -> Connection:
        """PENDING → FAILED with ``reason`` (conditional on the version and on PENDING)."""
        ...

    def authorize(
        self,
        *,
        user_id: str,
        bank_code: str,
        connection_id: str,
        expected_version: int | None,
        tokens: TokenPair,
        pending: PendingAuthorization,
        completion_hash: str,
        now: datetime,
    ) -> Connection:
        """Seal a login's tokens awaiting completion and store its completion value, in one transaction."""
        ...

    def complete_authorization(self, connection: Connection, *, completion_hash: str, now: datetime) -> Connection:
        """Use up the completion value and make the authorization's tokens the serving ones, in one transaction."""
        ...

    def consume_completion(self, completion_hash: str, *, outcome: CompletionOutcome, now: datetime) -> bool:
        """Use up a completion value without activating anything; ``False`` if it was used already."""
        ...

    def discard_authorization(
        self, connection: Connection, *, authorization_id: str, reason: StatusReason, now: datetime
    ) -> Connection | None:
        """Forget an authorization that will not be completed; ``None`` if the record no longer holds it."""
        ...

    def activate(
        self,
        *,
        user_id: str,
        bank_code: str,
        connection_id: str,
        expected_version: int | None,
        tokens: TokenPair,
        access_expires_at: datetime,
        reauth_due_at: datetime,
        now: datetime,
    ) -> Connection:
        """Store fresh tokens and make the connection ACTIVE (conditional on the version, or on absence)."""
        ...

    def store_refreshed_tokens(
        self,
        connection: Connection,
        *,
        tokens: TokenPair,
        access_expires_at: datetime,
        now: datetime,
        lease_owner: str | None = None,
    ) -> Connection:
        """Replace the tokens after a refresh (conditional on the version, on ACTIVE and on holding the lease)."""
        ...

    def mark_reauth_required(
        self, connection: Connection, *, now: datetime, notify: bool = False, reason: StatusReason = ...
    ) -> Connection:
        """REAUTH_REQUIRED for ``reason``, tokens forgotten (conditional on the version); ``notify``: event pending
        for the refresher, else out of the refresh index."""
        ...

    def acquire_lease(
        self,
        key: ConnectionKey,
        *,
        owner: str,
        now: datetime,
        lease_seconds: int,
        due_before: int | None = None,
        expected_version: int | None = None,
    ) -> LeasedConnection | None:
        """Take the refresh lease and read the record in one conditional write; ``None`` if not taken."""
        ...

    def release_lease(self, key: ConnectionKey, *, owner: str) -> bool:
        """Give the lease back if ``owner`` still holds it."""
        ...

    def revoke(self, connection: Connection, *, now: datetime, purge_at: datetime) -> Connection:
        """REVOKED, tokens forgotten, purged at ``purge_at`` (conditional on the version)."""
        ...

    def store_consent(self, connection: Connection, *, consent: ConsentSnapshot, now: datetime) -> Connection:
        """Record the consent the bank accepted (conditional on the version and on ACTIVE)."""
        ...


class RefreshRepository(ConnectionRepository, Protocol):
    """What the scheduled refresher needs on top of :class:`ConnectionRepository` (see :mod:`aisp.dal.connections`)."""

    def due_keys(self, shard: int, *, due_before: int, page_size: int | None = None) -> Iterator[ConnectionKey]:
        """Keys of the shard's records due by ``due_before`` (RefreshDueIndex query, lazily paged)."""
        ...

    def count_due(self, shard: int, *, due_before: int) -> int:
        """How many of the shard's records are due by ``due_before``."""
        ...

    def record_refresh_failure(
        self, key: ConnectionKey, *, owner: str, failures: int, error: str, next_due_at: int
    ) -> bool:
        """Count a transient failure, push the next attempt, release the lease (if still owned and ACTIVE)."""
        ...

    def claim_reauth_notice(self, key: ConnectionKey, *, now: datetime) -> Connection | None:
        """PENDING → SENT and out of the index; ``None`` if there was nothing pending."""
        ...

    def restore_reauth_notice(self, key: ConnectionKey, *, retry_due_at: int) -> bool:
        """SENT → PENDING, back in the index (the publish failed)."""
        ...

    def claim_expiry_notices(self, key: ConnectionKey, thresholds: Collection[int]) -> bool:
        """Record thresholds as sent if none was (conditional); ``True`` = the caller publishes."""
        ...

    def release_expiry_notices(self, key: ConnectionKey, thresholds: Collection[int]) -> None:
        """Forget thresholds whose event could not be published."""
        ...


class EventPublisher(Protocol):
    """The fintech's event bus."""

    def publish(self, event: LifecycleEvent) -> None:
        """Publish one lifecycle event; raises ``EventPublishError``."""
        ...


class FanoutQueue(Protocol):
    """Where a scheduled run (the refresher, the sync) hands groups of shards to other invocations."""

    def send(self, requests: list[FanoutRequest]) -> None:
        """Enqueue the requests; raises ``FanoutError``."""
        ...


class OAuthStateRepository(Protocol):
    """Pending authorization requests, single use."""

    def create(
        self,
        *,
        state: str,
        user_id: str,
        bank_code: str,
        connection_id: str,
        return_url: str,
        redirect_uri: str,
        now: datetime,
        expires_at: datetime,
        sealed_code_verifier: bytes | None = None,
    ) -> OAuthState:
        """Store a state (hashed), with PKCE's verifier sealed with it."""
        ...

    def consume(self, state: str, *, now: datetime) -> OAuthState:
        """Use a state once; raises ``OAuthStateRejectedError`` (unknown, used, expired)."""
        ...


class BankGateway(Protocol):
    """The banks' OAuth endpoints, by bank code."""

    def authorization_url(
        self, bank_code: str, *, redirect_uri: str, state: str, code_challenge: str | None = None
    ) -> str:
        """The bank's login screen URL for this request (``code_challenge``: PKCE S256)."""
        ...

    def exchange_code(
        self, bank_code: str, *, code: str, redirect_uri: str, code_verifier: str | None = None
    ) -> IssuedTokens:
        """Exchange an authorization code (with PKCE's verifier); raises ``UpstreamError`` subclasses."""
        ...

    def refresh(self, bank_code: str, *, refresh_token: str) -> IssuedTokens:
        """Refresh the access token; raises ``ReauthRequiredError`` when the refresh token is refused, and
        ``ClientCredentialsRejectedError`` when our client is."""
        ...

    def revoke(self, bank_code: str, *, token: str, token_type_hint: str | None = None) -> None:
        """Revoke a token at the bank."""
        ...


# ----------------------------------------------------------------------------------------------------------------
# Account information (issue 5)
# ----------------------------------------------------------------------------------------------------------------


class AccountDataGateway(Protocol):
    """The banks' AISP data calls, by bank code, with an access token; ``psu`` is ``None`` for batch calls.

    Every method raises :class:`~aisp.errors.UpstreamError` subclasses (401 → ``BankTokenInvalidError``, 403 →
    ``BankAccessDeniedError`` or ``BankRateLimitedError`` for TMRQ, 404 → ``BankNotFoundError``...).
    """

    def get_accounts(self, bank_code: str, *, access_token: str, psu: PsuInfo | None) -> BankAccounts:
        """The user's accounts (no eligible account → none)."""
        ...

    def put_consents(self, bank_code: str, *, access_token: str, consent: ConsentSnapshot, psu: PsuInfo | None) -> None:
        """Give the bank the user's consent (replaces the previous one)."""
        ...

    def get_balances(
        self, bank_code: str, *, access_token: str, account_id: str, psu: PsuInfo | None
    ) -> list[BankBalance]:
        """An account's balances."""
        ...

    def get_transactions_page(
        self,
        bank_code: str,
        *,
        access_token: str,
        account_id: str,
        psu: PsuInfo | None,
        date_from: date | None = None,
        date_to: date | None = None,
        page_url: str | None = None,
    ) -> TransactionsPage:
        """One page of an account's transactions (``page_url``: a page link the bank gave)."""
        ...

    def get_trusted_beneficiaries(
        self, bank_code: str, *, access_token: str, psu: PsuInfo | None
    ) -> list[BankBeneficiary]:
        """The user's trusted beneficiaries (none → empty list)."""
        ...

    def get_end_user_identity(self, bank_code: str, *, access_token: str, psu: PsuInfo | None) -> BankIdentity | None:
        """The connected user's identity (none → ``None``)."""
        ...


# ----------------------------------------------------------------------------------------------------------------
# Unattended access (issue 14)
# ----------------------------------------------------------------------------------------------------------------


class QuotaLedger(Protocol):
    """Today's counters of unattended reads (:class:`~aisp.models.quota.QuotaKey`), safe under concurrent callers.

    ``expires_at`` is when a counter may be forgotten (a day after its Paris day ends). Every method raises
    :class:`~aisp.errors.PersistenceError` when the store fails.
    """

    def reserve(self, key: QuotaKey, *, limit: int, expires_at: datetime) -> QuotaUsage | None:
        """Take one unit with one conditional write: the counter after it, or ``None`` when none is left (``limit``
        used, or the bank said the day is exhausted); never more than ``limit`` however many callers race."""
        ...

    def release(self, key: QuotaKey) -> None:
        """Give one unit back (a reserved call that never reached the bank); never below zero."""
        ...

    def exhaust(self, key: QuotaKey, *, limit: int, expires_at: datetime) -> None:
        """Mark the counter spent for its day: the bank refused it as over its quota."""
        ...

    def usage(self, bank_code: str, user_id: str, day: date) -> list[tuple[QuotaKey, QuotaUsage]]:
        """Every counter of this user at this bank on ``day``."""
        ...


# ----------------------------------------------------------------------------------------------------------------
# Background sync (issue 15)
# ----------------------------------------------------------------------------------------------------------------


class TransactionStore(Protocol):
    """The synced transactions of each connection and its change feed (``docs/sync.md``, The store).

    Writes to one connection are serialized by a lease on its feed; a change and the transaction it leaves are
    written together, and the feed's ``committed`` number moves only once a whole write is in, so a reader never
    sees half of one nor misses an earlier change. Every method raises :class:`~aisp.errors.PersistenceError` when
    the store fails.
    """

    def live(self, connection_id: str, account_id: str, *, since: date | None = None) -> StoredAccount:
        """The account's transactions as last synced, by ``transaction_id`` (removed ones left out), with the feed's
        version read before them; with ``since``, only those whose :func:`~aisp.models.sync.window_day` is ``None``
        (pending, undated) or not before ``since``."""
        ...

    def stored(
        self, connection_id: str, account_id: str, transaction_ids: Collection[str]
    ) -> dict[str, SyncedTransaction]:
        """Those of ``transaction_ids`` the account keeps, by id, in batch reads (after a :meth:`live` read whose
        version covers them: a write begun since refuses the append)."""
        ...

    def append(
        self,
        connection_id: str,
        changes: Sequence[TransactionChange],
        *,
        owner: str,
        now: datetime,
        expected: int | None = None,
    ) -> int:
        """Apply ``changes`` and number them in the feed; the feed's committed number after it. With ``expected``
        (the ``version`` of the :meth:`live` read the changes were diffed against), only if no write began since.

        Raises
        ------
        ConflictError
            Another writer holds the connection's feed lease (until its expiry), or a write began after the
            ``expected`` version was read (diff again against a new :meth:`live` read).
        """
        ...

    def feed(self, connection_id: str, *, after: int, limit: int) -> FeedPage:
        """Up to ``limit`` committed changes numbered above ``after``, in order, with the committed number."""
        ...

    def feed_json(self, connection_id: str, *, after: int, limit: int) -> StoredFeedPage:
        """:meth:`feed`'s page with each transaction as its API item's JSON text, no model built (the feed route's
        read)."""
        ...

    def purge(
        self,
        connection_id: str,
        account_ids: Collection[str] | None = None,
        *,
        balances_only: bool = False,
        transactions_only: bool = False,
    ) -> None:
        """Forget the accounts' transactions, changes and balances (``None``: the whole connection);
        ``balances_only``: only their balances; ``transactions_only``: only their transactions and changes."""
        ...

    def put_balances(
        self,
        connection_id: str,
        account_id: str,
        balances: Sequence[BankBalance],
        *,
        now: datetime,
        live: bool = False,
    ) -> bool:
        """Keep the account's balances as read at ``now`` (replacing the previous ones); whether they were kept.
        ``live``: read live (not by a sync), and kept only if the store already keeps the account's balances."""
        ...

    def balances(self, connection_id: str, account_id: str) -> tuple[list[BankBalance], datetime] | None:
        """The account's balances last kept and when they were read, or ``None``."""
        ...

    def freshness(self, connection_id: str, account_id: str) -> AccountFreshness:
        """When the account's transactions and balances were last stored, and by whom (``None``: not kept)."""
        ...

    def freshness_many(self, connection_id: str, account_ids: Collection[str]) -> dict[str, AccountFreshness]:
        """:meth:`freshness` of each of ``account_ids`` (every one a key of the answer), in one batch read."""
        ...

    def note_listing(self, connection_id: str, account_id: str, freshness: Freshness) -> bool:
        """Record that the account's transactions were stored from a complete listing (``freshness``); whether it
        was recorded. A live one only if the store already keeps the account's transactions (a sync noted them)."""
        ...

    def remember_account(self, connection_id: str, account_id: str, *, identifier: str) -> None:
        """Note which account (its IBAN, or a card's masked number) ``account_id`` is, for purges by consent."""
        ...

    def accounts(self, connection_id: str) -> dict[str, str]:
        """The accounts the store holds data of: ``account_id`` → IBAN or masked card number."""
        ...

    def schedule_sync(
        self,
        connection_id: str,
        *,
        user_id: str,
        bank_code: str,
        at: datetime,
        only_if_unscheduled: bool = False,
    ) -> bool:
        """Put the connection in the due index, its next sync at ``at`` (a connection that became ACTIVE); with
        ``only_if_unscheduled``, only when it is not in it already (the catch-up). Whether it was written."""
        ...

    def due_syncs(self, shard: int, *, due_before: datetime, page_size: int | None = None) -> Iterator[DueSync]:
        """The shard's scheduled connections due by ``due_before``, most overdue first (an index: may be stale)."""
        ...

    def count_due_syncs(self, shard: int, *, due_before: datetime) -> int:
        """How many of the shard's scheduled connections are due by ``due_before``."""
        ...

    def unschedule_sync(self, due: DueSync) -> bool:
        """Take the connection out of the due index (no longer ACTIVE), unless it was scheduled again since ``due``
        was read; whether it was."""
        ...

    def claim_sync(self, connection_id: str, *, now: datetime, next_at: datetime) -> bool:
        """Take the connection's due sync: ``True`` (and its next one set to ``next_at``) when it is scheduled and was
        due by ``now``; ``False`` when it is not due, not scheduled (or gone), or another run took it first."""
        ...

    def defer_sync(self, connection_id: str, *, at: datetime) -> None:
        """Set the connection's next sync to ``at`` (after a failed one), if it is still scheduled."""
        ...

    def claim_catchup(self, shard: int, *, now: datetime, next_at: datetime) -> bool:
        """Take the shard's catch-up walk (connections older than the due index): ``True`` (the next one not before
        ``next_at``) when it was due by ``now`` or never done; ``False`` otherwise."""
        ...
