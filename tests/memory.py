"""In-memory connections and OAuth states repositories, and quota ledger: the DynamoDB ones' conditions over dicts,
for fast tests.

Same methods, conditions, exceptions (with their details) and returned domain objects as
:class:`aisp.dal.connections.DynamoConnectionRepository` and :class:`aisp.dal.states.DynamoOAuthStateRepository`.
Each record is kept as the item DynamoDB would hold: PynamoDB's attribute names, values as PynamoDB reads them back
(UTC datetimes, TTLs to the second, JSON consent, sealed token blobs, the sparse ``refresh_shard``/``refresh_due_at``
keys). Every write checks its condition against the stored item and applies its actions (all evaluated on the old
item, as DynamoDB does) under one lock, and builds a new item, so readers always see a whole one; the two-item
transactions of a login (authorization + completion value) happen whole or not at all. Tokens are sealed by the
injected cipher through the DynamoDB repository's own helpers, bound to ``(user_id, bank_code)``.

Left out: TTL deletion (DynamoDB's lags by days; both repositories check expiry themselves) and the index's eventual
consistency (the lease condition covers it). ``tests/contract`` runs one suite against both implementations.

``latency`` (seconds, slept outside the lock, GIL released) models one network round trip per DynamoDB call (one per
page of ``due_keys``): ``bench/refresher.py`` uses it in place of a table.
"""

from __future__ import annotations

import calendar
import itertools
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Final

from aisp.clock import epoch
from aisp.dal.connections import open_tokens, refresh_shard, seal_tokens
from aisp.dal.states import hash_state
from aisp.dal.tables import ConnectionRecord, OAuthStateRecord
from aisp.errors import (
    ConflictError,
    ConnectionNotFoundError,
    InvalidRequestError,
    OAuthStateRejectedError,
    TokenIntegrityError,
)
from aisp.models.accounts import synced_item_head, synced_item_json
from aisp.models.bank import BankBalance
from aisp.models.connection import (
    Completion,
    CompletionOutcome,
    Connection,
    ConnectionStatus,
    ConsentSnapshot,
    OAuthState,
    PendingAuthorization,
    StatusReason,
    TokenPair,
)
from aisp.models.quota import QuotaKey, QuotaUsage
from aisp.models.refresh import ConnectionKey, LeasedConnection, ReauthNotice
from aisp.models.sync import (
    AccountFreshness,
    DueSync,
    FeedEntry,
    FeedPage,
    Freshness,
    StoredAccount,
    StoredChange,
    StoredFeedPage,
    SyncedTransaction,
    TransactionChange,
    sync_shard,
    window_day,
)
from aisp.observability import logger

if TYPE_CHECKING:
    from aisp.aws.kms import TokenCipher

__all__ = [
    "MemoryConnectionRepository",
    "MemoryOAuthStateRepository",
    "MemoryQuotaLedger",
    "MemoryTransactionStore",
]

Item = dict[str, Any]
Condition = Callable[[Item | None], bool]

_CONFLICT: Final = "conditional write failed"
_TRANSACTION_CONFLICT: Final = "transaction condition failed"
_CHECK_FAILED: Final = "ConditionalCheckFailed"
_NOT_FOUND: Final = "connection not found"
DEFAULT_PAGE_SIZE: Final = 500


class _Remove:
    """``REMOVE`` of an update: the attribute is gone afterwards."""


REMOVE: Final = _Remove()


@dataclass(frozen=True, slots=True)
class _FromOld:
    """A value computed from the item before the write (``if_not_exists``, ``ADD``, ``SET a = b``)."""

    compute: Callable[[Item], Any]


def _utc(moment: datetime) -> datetime:
    """A ``UTCDateTimeAttribute`` as read back: the same instant in UTC (naive = UTC, as PynamoDB takes it)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _ttl_epoch(moment: datetime) -> int:
    """A ``TTLAttribute``'s stored number: whole seconds (PynamoDB refuses naive datetimes)."""
    if moment.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    return calendar.timegm(moment.utctimetuple())


def _ttl(moment: datetime) -> datetime:
    """A ``TTLAttribute`` as read back: truncated to the second, in UTC."""
    return datetime.fromtimestamp(_ttl_epoch(moment), tz=UTC)


def _apply(old: Item | None, key: Mapping[str, str], changes: Mapping[str, Any]) -> Item:
    """The item after an ``UpdateItem`` of ``changes`` (every right-hand side evaluated on ``old``), as a new dict:
    a reader holding the old one still sees a whole item."""
    before = old if old is not None else {}
    new = dict(before) if old is not None else dict(key)
    for name, value in changes.items():
        resolved = value.compute(before) if isinstance(value, _FromOld) else value
        if resolved is REMOVE:
            new.pop(name, None)
        else:
            new[name] = resolved
    return new


# -- conditions (a missing item or attribute fails every comparison, as in DynamoDB) ---------------------------------


def _absent(item: Item | None) -> bool:
    return item is None


def _exists(item: Item | None) -> bool:
    return item is not None


def _equals(name: str, value: Any) -> Condition:
    return lambda item: item is not None and name in item and item[name] == value


def _at_most(name: str, bound: int) -> Condition:
    return lambda item: item is not None and name in item and item[name] <= bound


def _all(*conditions: Condition) -> Condition:
    return lambda item: all(condition(item) for condition in conditions)


def _version_condition(expected_version: int | None) -> tuple[Condition, int]:
    if expected_version is None:
        return _absent, 1
    return _equals("version", expected_version), expected_version + 1


def _status_is(status: ConnectionStatus) -> Condition:
    return _equals("status", status.value)


# -- what the writes share with DynamoConnectionRepository's -----------------------------------------------------------


def _key_attributes(key: ConnectionKey) -> dict[str, str]:
    return {"user_id": key.user_id, "bank_code": key.bank_code}


def _due_epoch(*moments: datetime | None) -> int | None:
    present = [moment for moment in moments if moment is not None]
    return epoch(min(present)) if present else None


def _index(user_id: str, bank_code: str, due: int | None) -> dict[str, Any]:
    if due is None:
        return {"refresh_shard": REMOVE, "refresh_due_at": REMOVE}
    return {"refresh_shard": refresh_shard(user_id, bank_code), "refresh_due_at": due}


_LEASE_REMOVALS: Final[Mapping[str, Any]] = {"lease_until": REMOVE, "lease_owner": REMOVE}
_BOOKKEEPING_REMOVALS: Final[Mapping[str, Any]] = {
    **_LEASE_REMOVALS,
    "refresh_failures": REMOVE,
    "refresh_last_error": REMOVE,
    "expiry_notices": REMOVE,
    "reauth_notice": REMOVE,
    "reauth_notified_at": REMOVE,
}
_PENDING_REMOVALS: Final[Mapping[str, Any]] = {"pending_tokens": REMOVE, "pending": REMOVE, "authorization_id": REMOVE}


def _connection(item: Item) -> Connection:
    consent, pending, reason = item.get("consent"), item.get("pending"), item.get("status_reason")
    return Connection(
        connection_id=item["connection_id"],
        user_id=item["user_id"],
        bank_code=item["bank_code"],
        status=ConnectionStatus(item["status"]),
        created_at=item["created_at"],
        updated_at=item["updated_at"],
        connected_at=item.get("connected_at"),
        access_expires_at=item.get("access_expires_at"),
        refresh_issued_at=item.get("refresh_issued_at"),
        reauth_due_at=item.get("reauth_due_at"),
        revoked_at=item.get("revoked_at"),
        consent=None if consent is None else ConsentSnapshot.model_validate_json(consent),
        has_tokens="tokens" in item,
        version=item.get("version", 0),
        status_reason=None if reason is None else StatusReason(reason),
        journey_expires_at=item.get("journey_expires_at"),
        pending=None if pending is None else PendingAuthorization.model_validate_json(pending),
    )


def _completion(completion_hash: str, item: Item) -> Completion:
    outcome = item.get("outcome")
    return Completion(
        completion_hash=completion_hash,
        user_id=item["user_id"],
        bank_code=item["bank_code"],
        connection_id=item["connection_id"],
        authorization_id=item["authorization_id"],
        created_at=item["created_at"],
        valid_until=item["valid_until"],
        consumed_at=item.get("consumed_at"),
        outcome=None if outcome is None else CompletionOutcome(outcome),
    )


def _raw(model: type[ConnectionRecord] | type[OAuthStateRecord], item: Item) -> dict[str, dict[str, Any]]:
    """The item as DynamoDB's low-level API returns it (``{"N": "42"}``...), by the model's own serializers."""
    attributes = model.get_attributes()
    raw: dict[str, dict[str, Any]] = {}
    for name, value in item.items():
        attribute = attributes[name]
        raw[attribute.attr_name] = {attribute.attr_type: attribute.serialize(value)}
    return raw


class _Latency:
    def __init__(self, latency: float) -> None:
        self._latency = latency

    def round_trip(self) -> None:
        """One DynamoDB call's network wait (``time.sleep`` releases the GIL, like a socket read)."""
        if self._latency > 0:
            time.sleep(self._latency)


class MemoryConnectionRepository(_Latency):
    """:class:`aisp.logic.ports.RefreshRepository` over dicts, with ``DynamoConnectionRepository``'s semantics.

    Parameters
    ----------
    cipher
        Seals and opens the token blobs (``tests.fakes.local_token_cipher()`` in tests, the KMS envelope cipher in
        the benchmark).
    latency
        Seconds slept per DynamoDB call the real repository would make.
    page_size
        Keys per ``due_keys`` page when the caller gives none (one round trip each).
    """

    def __init__(self, cipher: TokenCipher, *, latency: float = 0.0, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        super().__init__(latency)
        self._cipher = cipher
        self._page_size = page_size
        self._lock = threading.Lock()
        self._items: dict[ConnectionKey, Item] = {}
        self._completions: dict[str, Item] = {}

    # ------------------------------------------------------------------------------------------------------------
    # Test helpers (what ``tests.conftest.AwsStack`` offers on the DynamoDB side)
    # ------------------------------------------------------------------------------------------------------------

    def raw_connection(self, user_id: str, bank_code: str) -> dict[str, dict[str, Any]]:
        """The item as DynamoDB would store it (attribute-value maps; ``{}`` when there is none)."""
        with self._lock:
            item = self._items.get(ConnectionKey(user_id, bank_code))
        return {} if item is None else _raw(ConnectionRecord, item)

    def set_raw_attribute(self, user_id: str, bank_code: str, name: str, value: Mapping[str, Any]) -> None:
        """Overwrite one attribute with a raw attribute value (``{"B": blob}``), bypassing every condition."""
        attribute = ConnectionRecord.get_attributes()[name]
        ((_, serialized),) = value.items()
        key = ConnectionKey(user_id, bank_code)
        with self._lock:
            self._items[key] = {**self._items[key], name: attribute.deserialize(serialized)}

    # ------------------------------------------------------------------------------------------------------------
    # Reads
    # ------------------------------------------------------------------------------------------------------------

    def _get(self, user_id: str, bank_code: str) -> Item | None:
        self.round_trip()
        with self._lock:
            return self._items.get(ConnectionKey(user_id, bank_code))

    def _seal(self, tokens: TokenPair, user_id: str, bank_code: str) -> bytes:
        return seal_tokens(self._cipher, tokens, user_id, bank_code)

    def _open(self, blob: bytes, user_id: str, bank_code: str) -> TokenPair:
        return open_tokens(self._cipher, blob, user_id, bank_code)

    def find(self, user_id: str, bank_code: str) -> Connection | None:
        """The user's connection to ``bank_code``, or ``None``."""
        item = self._get(user_id, bank_code)
        return None if item is None else _connection(item)

    def get_with_tokens(self, user_id: str, bank_code: str) -> tuple[Connection, TokenPair | None]:
        """The connection and its decrypted tokens; ``ConnectionNotFoundError``, ``TokenIntegrityError``."""
        item = self._get(user_id, bank_code)
        if item is None:
            raise ConnectionNotFoundError(_NOT_FOUND, details={"bank_code": bank_code})
        tokens = None if item.get("tokens") is None else self._open(item["tokens"], user_id, bank_code)
        return _connection(item), tokens

    def get_with_all_tokens(
        self, user_id: str, bank_code: str
    ) -> tuple[Connection, TokenPair | None, TokenPair | None]:
        """The connection, its serving tokens and those awaiting completion (decrypted)."""
        item = self._get(user_id, bank_code)
        if item is None:
            raise ConnectionNotFoundError(_NOT_FOUND, details={"bank_code": bank_code})
        serving = None if item.get("tokens") is None else self._open(item["tokens"], user_id, bank_code)
        pending = None if item.get("pending_tokens") is None else self._open(item["pending_tokens"], user_id, bank_code)
        return _connection(item), serving, pending

    def list_for_user(self, user_id: str) -> list[Connection]:
        """Every connection of ``user_id``, ordered by bank code."""
        self.round_trip()
        with self._lock:
            items = [item for key, item in self._items.items() if key.user_id == user_id]
        return [_connection(item) for item in sorted(items, key=lambda item: str(item["bank_code"]))]

    def find_completion(self, completion_hash: str) -> Completion | None:
        """The completion stored under ``completion_hash``, or ``None``."""
        self.round_trip()
        with self._lock:
            item = self._completions.get(completion_hash)
        return None if item is None else _completion(completion_hash, item)

    # ------------------------------------------------------------------------------------------------------------
    # Writes (all conditional)
    # ------------------------------------------------------------------------------------------------------------

    def _write(
        self, key: ConnectionKey, condition: Condition, changes: Mapping[str, Any], operation: str, **details: Any
    ) -> Item:
        """One conditional ``UpdateItem``: ``ConflictError`` (details as ``aisp.dal.errors.translated`` gives)."""
        self.round_trip()
        with self._lock:
            old = self._items.get(key)
            if not condition(old):
                raise ConflictError(_CONFLICT, details={"operation": operation, **details})
            new = self._items[key] = _apply(old, _key_attributes(key), changes)
            return new

    def _update(
        self,
        connection: Connection,
        *,
        operation: str,
        changes: Mapping[str, Any],
        now: datetime,
        extra_condition: Condition | None = None,
    ) -> Connection:
        """A write conditional on ``connection.version`` that bumps it (``DynamoConnectionRepository._update``)."""
        condition, new_version = _version_condition(connection.version)
        if extra_condition is not None:
            condition = _all(condition, extra_condition)
        item = self._write(
            ConnectionKey(connection.user_id, connection.bank_code),
            condition,
            {**changes, "updated_at": _utc(now), "version": new_version},
            operation,
            bank_code=connection.bank_code,
            expected_version=connection.version,
        )
        return _connection(item)

    def create_pending(
        self,
        *,
        user_id: str,
        bank_code: str,
        connection_id: str,
        now: datetime,
        journey_expires_at: datetime | None = None,
    ) -> Connection:
        """Create a PENDING connection; ``ConflictError`` if the user has one to this bank."""
        changes: dict[str, Any] = {
            "connection_id": connection_id,
            "status": ConnectionStatus.PENDING.value,
            "created_at": _utc(now),
            "updated_at": _utc(now),
            "version": 1,
        }
        if journey_expires_at is not None:
            changes["journey_expires_at"] = _utc(journey_expires_at)
        item = self._write(
            ConnectionKey(user_id, bank_code),
            _absent,
            changes,
            "create_connection",
            bank_code=bank_code,
            connection_id=connection_id,
        )
        return _connection(item)

    def reopen(
        self, connection: Connection, *, now: datetime, journey_expires_at: datetime | None = None
    ) -> Connection:
        """REVOKED or FAILED → PENDING, no longer purged (conditional on the version)."""
        return self._update(
            connection,
            operation="reopen_connection",
            changes={
                "status": ConnectionStatus.PENDING.value,
                "status_reason": REMOVE,
                "purge_at": REMOVE,
                "revoked_at": REMOVE,
                "journey_expires_at": REMOVE if journey_expires_at is None else _utc(journey_expires_at),
            },
            now=now,
        )

    def note_journey(self, connection: Connection, *, journey_expires_at: datetime) -> bool:
        """A PENDING connection's new login link expiry (no version bump); ``False`` if no longer PENDING."""
        try:
            self._write(
                ConnectionKey(connection.user_id, connection.bank_code),
                _status_is(ConnectionStatus.PENDING),
                {"journey_expires_at": _utc(journey_expires_at)},
                "note_journey",
                bank_code=connection.bank_code,
            )
        except ConflictError:
            return False
        return True

    def fail_journey(self, connection: Connection, *, reason: StatusReason, now: datetime) -> Connection:
        """PENDING → FAILED with ``reason`` (conditional on the version and on PENDING)."""
        return self._update(
            connection,
            operation="fail_journey",
            changes={
                "status": ConnectionStatus.FAILED.value,
                "status_reason": reason.value,
                "journey_expires_at": REMOVE,
            },
            now=now,
            extra_condition=_status_is(ConnectionStatus.PENDING),
        )

    def _transact_locked(
        self, operation: str, bank_code: str, writes: list[tuple[dict[Any, Item], Any, Condition, Item]]
    ) -> None:
        """``TransactWriteItems``: every ``(table, key, condition, new item)`` is written, or none.

        ``ConflictError`` with the cancellation reasons DynamoDB gives (``None`` for an item that passed).
        """
        reasons = [None if condition(table.get(key)) else _CHECK_FAILED for table, key, condition, _ in writes]
        if any(reasons):
            raise ConflictError(
                _TRANSACTION_CONFLICT, details={"operation": operation, "bank_code": bank_code, "reasons": reasons}
            )
        for table, key, _, new in writes:
            table[key] = new

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
        key = ConnectionKey(user_id, bank_code)
        sealed = self._seal(tokens, user_id, bank_code)
        if expected_version is not None:
            self.round_trip()  # the real repository reads the record first
        self.round_trip()
        with self._lock:
            current = self._items.get(key) if expected_version is not None else None
            status = ConnectionStatus(current["status"]) if current is not None else ConnectionStatus.PENDING
            serving_due = None
            if current is not None and status is ConnectionStatus.ACTIVE and "tokens" in current:
                serving_due = current.get("access_expires_at")
            condition, new_version = _version_condition(expected_version)
            changes: dict[str, Any] = {
                "connection_id": connection_id,
                "created_at": _FromOld(lambda old: old.get("created_at", _utc(now))),
                "pending_tokens": sealed,
                "pending": pending.model_dump_json(),
                "authorization_id": pending.authorization_id,
                **_index(user_id, bank_code, _due_epoch(serving_due, pending.expires_at)),
            }
            if status is not ConnectionStatus.ACTIVE:
                changes |= {
                    "status": ConnectionStatus.AUTHORIZED.value,
                    "status_reason": REMOVE,
                    "journey_expires_at": REMOVE,
                }
            changes |= {"updated_at": _utc(now), "version": new_version}
            completion: Item = {
                "user_id": user_id,
                "bank_code": bank_code,
                "connection_id": connection_id,
                "authorization_id": pending.authorization_id,
                "created_at": _utc(now),
                "valid_until": _utc(pending.expires_at),
            }
            self._transact_locked(
                "authorize_connection",
                bank_code,
                [
                    (self._completions, completion_hash, _absent, completion),
                    (self._items, key, condition, _apply(self._items.get(key), _key_attributes(key), changes)),
                ],
            )
        return self._read(user_id, bank_code)

    def complete_authorization(self, connection: Connection, *, completion_hash: str, now: datetime) -> Connection:
        """Use up the completion value and make the authorization's tokens the serving ones, in one transaction."""
        pending = connection.pending
        if pending is None:
            raise ConflictError("no authorization awaits completion", details={"bank_code": connection.bank_code})
        user_id, bank_code = connection.user_id, connection.bank_code
        key = ConnectionKey(user_id, bank_code)
        access_due = pending.access_expires_at if pending.has_refresh_token else None
        changes: dict[str, Any] = {
            "status": ConnectionStatus.ACTIVE.value,
            "status_reason": REMOVE,
            "tokens": _FromOld(lambda old: old.get("pending_tokens", REMOVE)),
            "access_expires_at": _utc(pending.access_expires_at),
            "connected_at": _utc(pending.authorized_at),
            "refresh_issued_at": _utc(pending.authorized_at),
            "reauth_due_at": _utc(pending.reauth_due_at),
            "revoked_at": REMOVE,
            "purge_at": REMOVE,
            "journey_expires_at": REMOVE,
            **_PENDING_REMOVALS,
            # A new SCA: a new reauth_due_at, so the expiry notices start over; a refresh in flight loses its lease.
            **_BOOKKEEPING_REMOVALS,
            **_index(user_id, bank_code, _due_epoch(access_due)),
            "updated_at": _utc(now),
            "version": connection.version + 1,
        }
        condition = _all(_equals("version", connection.version), _equals("authorization_id", pending.authorization_id))
        now_utc = _utc(now)
        completion_condition = _all(
            lambda item: item is None or "consumed_at" not in item,
            _equals("user_id", user_id),
            _equals("bank_code", bank_code),
            _equals("authorization_id", pending.authorization_id),
            lambda item: item is not None and "valid_until" in item and item["valid_until"] > now_utc,
        )
        self.round_trip()
        with self._lock:
            used = {"consumed_at": now_utc, "outcome": CompletionOutcome.COMPLETED.value}
            self._transact_locked(
                "complete_authorization",
                bank_code,
                [
                    (
                        self._completions,
                        completion_hash,
                        completion_condition,
                        _apply(self._completions.get(completion_hash), {}, used),
                    ),
                    (self._items, key, condition, _apply(self._items.get(key), _key_attributes(key), changes)),
                ],
            )
        return self._read(user_id, bank_code)

    def consume_completion(self, completion_hash: str, *, outcome: CompletionOutcome, now: datetime) -> bool:
        """Use up a completion value without activating anything; ``False`` if it was used already (or unknown)."""
        self.round_trip()
        with self._lock:
            item = self._completions.get(completion_hash)
            if item is None or "consumed_at" in item:
                return False
            self._completions[completion_hash] = {**item, "consumed_at": _utc(now), "outcome": outcome.value}
        return True

    def discard_authorization(
        self, connection: Connection, *, authorization_id: str, reason: StatusReason, now: datetime
    ) -> Connection | None:
        """Forget an authorization that will not be completed; ``None`` if the record no longer holds it."""
        pending = connection.pending
        if pending is None or pending.authorization_id != authorization_id:
            return None
        user_id, bank_code = connection.user_id, connection.bank_code
        changes: dict[str, Any] = dict(_PENDING_REMOVALS)
        if connection.status is ConnectionStatus.ACTIVE:
            changes |= _index(user_id, bank_code, _due_epoch(connection.access_expires_at))
        else:
            status, status_reason = pending.outcome(reason)
            changes |= {
                "status": status.value,
                "status_reason": REMOVE if status_reason is None else status_reason.value,
                **_index(user_id, bank_code, None),
            }
        # "Whatever the version": the record must hold the authorization, and the version is still bumped (ADD).
        changes |= {"updated_at": _utc(now), "version": _FromOld(lambda old: int(old.get("version", 0)) + 1)}
        try:
            item = self._write(
                ConnectionKey(user_id, bank_code),
                _all(_exists, _equals("authorization_id", authorization_id)),
                changes,
                "discard_authorization",
                bank_code=bank_code,
                expected_version=None,
            )
        except ConflictError:
            return None
        return _connection(item)

    def _token_changes(
        self,
        user_id: str,
        bank_code: str,
        tokens: TokenPair,
        access_expires_at: datetime,
        pending: PendingAuthorization | None = None,
    ) -> dict[str, Any]:
        refresh_at = access_expires_at if tokens.refresh_token is not None else None
        return {
            "tokens": self._seal(tokens, user_id, bank_code),
            "access_expires_at": _utc(access_expires_at),
            **_index(user_id, bank_code, _due_epoch(refresh_at, pending.expires_at if pending else None)),
        }

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
        condition, new_version = _version_condition(expected_version)
        changes = {
            "connection_id": connection_id,
            "status": ConnectionStatus.ACTIVE.value,
            "created_at": _FromOld(lambda old: old.get("created_at", _utc(now))),
            "connected_at": _utc(now),
            "refresh_issued_at": _utc(now),
            "reauth_due_at": _utc(reauth_due_at),
            "revoked_at": REMOVE,
            "purge_at": REMOVE,
            # A new SCA: a new reauth_due_at, so the expiry notices start over; a refresh in flight loses its lease.
            **_BOOKKEEPING_REMOVALS,
            **self._token_changes(user_id, bank_code, tokens, access_expires_at),
            "updated_at": _utc(now),
            "version": new_version,
        }
        item = self._write(
            ConnectionKey(user_id, bank_code),
            condition,
            changes,
            "activate_connection",
            bank_code=bank_code,
            expected_version=expected_version,
        )
        return _connection(item)

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
        condition = _status_is(ConnectionStatus.ACTIVE)
        if lease_owner is not None:
            condition = _all(condition, _equals("lease_owner", lease_owner))
        return self._update(
            connection,
            operation="store_refreshed_tokens",
            changes={
                **self._token_changes(
                    connection.user_id, connection.bank_code, tokens, access_expires_at, connection.pending
                ),
                **_LEASE_REMOVALS,
                "refresh_failures": REMOVE,
                "refresh_last_error": REMOVE,
            },
            now=now,
            extra_condition=condition,
        )

    def mark_reauth_required(
        self,
        connection: Connection,
        *,
        now: datetime,
        notify: bool = False,
        reason: StatusReason = StatusReason.ACCESS_REVOKED,
    ) -> Connection:
        """REAUTH_REQUIRED for ``reason``, tokens forgotten, lease released; ``notify``: event pending in the index."""
        changes: dict[str, Any] = {
            "status": ConnectionStatus.REAUTH_REQUIRED.value,
            "status_reason": reason.value,
            "tokens": REMOVE,
            **_LEASE_REMOVALS,
            "refresh_failures": REMOVE,
        }
        if notify:
            changes |= {
                "reauth_notice": ReauthNotice.PENDING.value,
                **_index(connection.user_id, connection.bank_code, epoch(now)),
            }
        else:
            changes |= _index(connection.user_id, connection.bank_code, None)
        return self._update(connection, operation="mark_reauth_required", changes=changes, now=now)

    def store_consent(self, connection: Connection, *, consent: ConsentSnapshot, now: datetime) -> Connection:
        """Record the consent the bank accepted (conditional on the version and on ACTIVE)."""
        return self._update(
            connection,
            operation="store_consent",
            changes={"consent": consent.model_dump_json()},
            now=now,
            extra_condition=_status_is(ConnectionStatus.ACTIVE),
        )

    def revoke(self, connection: Connection, *, now: datetime, purge_at: datetime) -> Connection:
        """REVOKED, tokens and consent forgotten, out of the index, purged at ``purge_at`` (conditional)."""
        return self._update(
            connection,
            operation="revoke_connection",
            changes={
                "status": ConnectionStatus.REVOKED.value,
                "status_reason": REMOVE,
                "journey_expires_at": REMOVE,
                "revoked_at": _utc(now),
                "purge_at": _ttl(purge_at),
                "tokens": REMOVE,
                **_PENDING_REMOVALS,
                "consent": REMOVE,
                "access_expires_at": REMOVE,
                **_index(connection.user_id, connection.bank_code, None),
                **_BOOKKEEPING_REMOVALS,
            },
            now=now,
        )

    def _read(self, user_id: str, bank_code: str) -> Connection:
        item = self._get(user_id, bank_code)
        if item is None:
            raise ConnectionNotFoundError(_NOT_FOUND, details={"bank_code": bank_code})
        return _connection(item)

    # ------------------------------------------------------------------------------------------------------------
    # The refresher: due keys, leases, failures, notices (none of these writes bumps the version)
    # ------------------------------------------------------------------------------------------------------------

    def due_keys(self, shard: int, *, due_before: int, page_size: int | None = None) -> Iterator[ConnectionKey]:
        """Keys of the shard's records due by ``due_before``, most urgent first, one round trip per page."""
        with self._lock:
            due = sorted(
                (item["refresh_due_at"], key)
                for key, item in self._items.items()
                if item.get("refresh_shard") == shard
                and "refresh_due_at" in item
                and item["refresh_due_at"] <= due_before
            )
        size = page_size or self._page_size
        for start in range(0, max(len(due), 1), size):
            self.round_trip()
            for _, key in due[start : start + size]:
                yield key

    def count_due(self, shard: int, *, due_before: int) -> int:
        """How many of the shard's records are due by ``due_before`` (one ``Select=COUNT`` query)."""
        self.round_trip()
        with self._lock:
            return sum(
                1
                for item in self._items.values()
                if item.get("refresh_shard") == shard
                and "refresh_due_at" in item
                and item["refresh_due_at"] <= due_before
            )

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
        if due_before is None and expected_version is None:
            raise InvalidRequestError("a lease needs due_before or expected_version")
        now_epoch = epoch(now)
        # Free: no lease, or an expired one (a crashed holder's).
        conditions: list[Condition] = [lambda item: item is None or item.get("lease_until", now_epoch) <= now_epoch]
        if due_before is not None:
            conditions.append(_at_most("refresh_due_at", due_before))
        if expected_version is not None:
            conditions += [_equals("version", expected_version), _status_is(ConnectionStatus.ACTIVE)]
        lease_until = now_epoch + lease_seconds
        try:
            item = self._write(
                key,
                _all(*conditions),
                {"lease_until": lease_until, "lease_owner": owner},
                "acquire_lease",
                bank_code=key.bank_code,
            )
        except ConflictError:
            return None
        tokens: TokenPair | None = None
        pending_tokens: TokenPair | None = None
        unreadable = False
        try:
            if item.get("tokens") is not None:
                tokens = self._open(item["tokens"], key.user_id, key.bank_code)
            if item.get("pending_tokens") is not None:
                pending_tokens = self._open(item["pending_tokens"], key.user_id, key.bank_code)
        except TokenIntegrityError:
            logger.warning("stored token blob does not authenticate", bank_code=key.bank_code)
            unreadable = True
        notice = item.get("reauth_notice")
        return LeasedConnection(
            connection=_connection(item),
            tokens=tokens,
            pending_tokens=pending_tokens,
            tokens_unreadable=unreadable,
            lease_owner=owner,
            lease_until=lease_until,
            refresh_due_at=item.get("refresh_due_at"),
            refresh_failures=int(item.get("refresh_failures") or 0),
            expiry_notices=frozenset(int(days) for days in item.get("expiry_notices") or ()),
            reauth_notice=None if notice is None else ReauthNotice(notice),
        )

    def _try(self, key: ConnectionKey, condition: Condition, changes: Mapping[str, Any], operation: str) -> bool:
        try:
            self._write(key, condition, changes, operation, bank_code=key.bank_code)
        except ConflictError:
            return False
        return True

    def release_lease(self, key: ConnectionKey, *, owner: str) -> bool:
        """Give the lease back if ``owner`` still holds it."""
        return self._try(key, _equals("lease_owner", owner), _LEASE_REMOVALS, "release_lease")

    def record_refresh_failure(
        self, key: ConnectionKey, *, owner: str, failures: int, error: str, next_due_at: int
    ) -> bool:
        """Count a transient failure, push the next attempt, release the lease (if still owned and ACTIVE)."""
        return self._try(
            key,
            _all(_equals("lease_owner", owner), _status_is(ConnectionStatus.ACTIVE)),
            {
                "refresh_failures": failures,
                "refresh_last_error": error,
                "refresh_due_at": next_due_at,
                **_LEASE_REMOVALS,
            },
            "record_refresh_failure",
        )

    def claim_reauth_notice(self, key: ConnectionKey, *, now: datetime) -> Connection | None:
        """PENDING → SENT and out of the index; ``None`` if there was nothing pending."""
        try:
            item = self._write(
                key,
                _all(
                    _status_is(ConnectionStatus.REAUTH_REQUIRED), _equals("reauth_notice", ReauthNotice.PENDING.value)
                ),
                {
                    "reauth_notice": ReauthNotice.SENT.value,
                    "reauth_notified_at": _utc(now),
                    **_index(key.user_id, key.bank_code, None),
                    **_LEASE_REMOVALS,
                },
                "claim_reauth_notice",
                bank_code=key.bank_code,
            )
        except ConflictError:
            return None
        return _connection(item)

    def restore_reauth_notice(self, key: ConnectionKey, *, retry_due_at: int) -> bool:
        """SENT → PENDING, back in the index due at ``retry_due_at`` (the publish failed)."""
        return self._try(
            key,
            _all(_status_is(ConnectionStatus.REAUTH_REQUIRED), _equals("reauth_notice", ReauthNotice.SENT.value)),
            {
                "reauth_notice": ReauthNotice.PENDING.value,
                "reauth_notified_at": REMOVE,
                **_index(key.user_id, key.bank_code, retry_due_at),
            },
            "restore_reauth_notice",
        )

    def claim_expiry_notices(self, key: ConnectionKey, thresholds: Collection[int]) -> bool:
        """Record ``thresholds`` as sent if none of them was and the record is ACTIVE; ``True``: publish."""
        if not thresholds:
            return False
        claimed = set(thresholds)
        return self._try(
            key,
            _all(
                _status_is(ConnectionStatus.ACTIVE),
                lambda item: item is not None and not claimed & item.get("expiry_notices", set()),
            ),
            {"expiry_notices": _FromOld(lambda old: old.get("expiry_notices", set()) | claimed)},
            "claim_expiry_notices",
        )

    def release_expiry_notices(self, key: ConnectionKey, thresholds: Collection[int]) -> None:
        """Forget ``thresholds`` (their event could not be published); ``ConflictError`` if the record is gone."""
        if thresholds:
            released = set(thresholds)
            self._write(
                key,
                _exists,
                {"expiry_notices": _FromOld(lambda old: (old.get("expiry_notices", set()) - released) or REMOVE)},
                "release_expiry_notices",
                bank_code=key.bank_code,
            )


def _state(item: Item) -> OAuthState:
    return OAuthState(
        state_hash=item["state_hash"],
        user_id=item["user_id"],
        bank_code=item["bank_code"],
        connection_id=item["connection_id"],
        return_url=item["return_url"],
        redirect_uri=item["redirect_uri"],
        created_at=item["created_at"],
        expires_at=item["expires_at"],
        consumed_at=item.get("consumed_at"),
        sealed_code_verifier=item.get("code_verifier"),
    )


class MemoryOAuthStateRepository(_Latency):
    """:class:`aisp.logic.ports.OAuthStateRepository` over a dict, with ``DynamoOAuthStateRepository``'s semantics:
    states stored by their SHA-256, single use, expiry checked to the second as the TTL attribute stores it."""

    def __init__(self, *, latency: float = 0.0) -> None:
        super().__init__(latency)
        self._lock = threading.Lock()
        self._items: dict[str, Item] = {}

    def raw_items(self) -> list[dict[str, dict[str, Any]]]:
        """Every stored state as DynamoDB's low-level API returns it (a ``Scan``)."""
        with self._lock:
            items = list(self._items.values())
        return [_raw(OAuthStateRecord, item) for item in items]

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
        """Store a new pending state (never overwrites one)."""
        item: Item = {
            "state_hash": hash_state(state),
            "user_id": user_id,
            "bank_code": bank_code,
            "connection_id": connection_id,
            "return_url": return_url,
            "redirect_uri": redirect_uri,
            "created_at": _utc(now),
            "expires_at": _ttl(expires_at),
        }
        if sealed_code_verifier is not None:
            item["code_verifier"] = sealed_code_verifier
        self.round_trip()
        with self._lock:
            if item["state_hash"] in self._items:
                raise ConflictError(
                    _CONFLICT,
                    details={"operation": "create_oauth_state", "bank_code": bank_code, "connection_id": connection_id},
                )
            self._items[item["state_hash"]] = item
        return _state(item)

    def consume(self, state: str, *, now: datetime) -> OAuthState:
        """Use a state once; ``OAuthStateRejectedError`` (``unknown``, ``used``, ``expired``) and nothing written."""
        key = hash_state(state)
        self.round_trip()
        with self._lock:
            item = self._items.get(key)
            if item is not None and "consumed_at" not in item and _ttl_epoch(item["expires_at"]) > _ttl_epoch(now):
                item = self._items[key] = {**item, "consumed_at": _utc(now)}
                return _state(item)
        raise self._rejection(key, now)

    def _rejection(self, key: str, now: datetime) -> OAuthStateRejectedError:
        self.round_trip()
        with self._lock:
            item = self._items.get(key)
        if item is None:
            return OAuthStateRejectedError("unknown")
        found = _state(item)
        reason = "used" if found.consumed_at is not None else ("expired" if found.expires_at <= now else "used")
        return OAuthStateRejectedError(
            reason, return_url=found.return_url, bank_code=found.bank_code, connection_id=found.connection_id
        )


if TYPE_CHECKING:  # mypy (through bench/) holds both to the ports the use cases take
    from aisp.logic.ports import OAuthStateRepository, RefreshRepository

    def _implements(cipher: TokenCipher) -> tuple[RefreshRepository, OAuthStateRepository]:
        return MemoryConnectionRepository(cipher), MemoryOAuthStateRepository()


class MemoryQuotaLedger:
    """:class:`aisp.dal.quota.DynamoQuotaLedger`'s counters over a dict, each change under one lock (its conditional
    ``UpdateItem``). ``calls`` counts the ledger's round trips (what ``bench/warm.py`` weighs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[QuotaKey, QuotaUsage] = {}
        self.calls = 0

    def reserve(self, key: QuotaKey, *, limit: int, expires_at: datetime) -> QuotaUsage | None:  # noqa: ARG002
        with self._lock:
            self.calls += 1
            current = self._counters.get(key)
            if current is not None and (current.exhausted or current.used >= limit):
                return None
            taken = QuotaUsage(used=(current.used if current else 0) + 1, limit=limit)
            self._counters[key] = taken
            return taken

    def release(self, key: QuotaKey) -> None:
        with self._lock:
            self.calls += 1
            current = self._counters.get(key)
            if current is not None and current.used > 0:
                self._counters[key] = current._replace(used=current.used - 1)

    def exhaust(self, key: QuotaKey, *, limit: int, expires_at: datetime) -> None:  # noqa: ARG002
        with self._lock:
            self.calls += 1
            current = self._counters.get(key)
            self._counters[key] = QuotaUsage(used=current.used if current else 0, limit=limit, exhausted=True)

    def usage(self, bank_code: str, user_id: str, day: date) -> list[tuple[QuotaKey, QuotaUsage]]:
        with self._lock:
            self.calls += 1
            return [
                (key, usage)
                for key, usage in self._counters.items()
                if (key.bank_code, key.user_id, key.day) == (bank_code, user_id, day)
            ]


class MemoryTransactionStore:
    """:class:`aisp.dal.sync.DynamoTransactionStore` over dicts: the same lease (taken, committing what a dead writer
    numbered, refused while another holds it), numbering, committed mark and purge, under one lock. Transactions are
    kept as models (the sealing is the DynamoDB store's own, tested there)."""

    def __init__(self, *, lease_seconds: int = 60) -> None:
        self._lock = threading.Lock()
        self._lease_seconds = lease_seconds
        self._heads: dict[str, dict[str, Any]] = {}
        self._transactions: dict[str, dict[tuple[str, str], SyncedTransaction]] = {}
        self._changes: dict[str, dict[int, TransactionChange]] = {}
        self._accounts: dict[str, dict[str, str]] = {}
        self._balances: dict[str, dict[str, tuple[list[BankBalance], Freshness]]] = {}
        self._listings: dict[str, dict[str, Freshness]] = {}
        self._catchups: dict[int, int] = {}
        self._schedules = itertools.count(1)

    def live(self, connection_id: str, account_id: str, *, since: date | None = None) -> StoredAccount:
        with self._lock:
            stored = self._transactions.get(connection_id, {})
            version = int(self._heads.get(connection_id, {}).get("seq", 0))
            return StoredAccount(
                {
                    tid: synced
                    for (aid, tid), synced in stored.items()
                    if aid == account_id
                    and (since is None or (day := window_day(synced.transaction)) is None or day >= since)
                },
                version,
            )

    def stored(
        self, connection_id: str, account_id: str, transaction_ids: Collection[str]
    ) -> dict[str, SyncedTransaction]:
        with self._lock:
            stored = self._transactions.get(connection_id, {})
            return {tid: stored[(account_id, tid)] for tid in transaction_ids if (account_id, tid) in stored}

    def feed(self, connection_id: str, *, after: int, limit: int) -> FeedPage:
        with self._lock:
            head = self._heads.get(connection_id, {})
            committed = int(head.get("committed", 0))
            changes = self._changes.get(connection_id, {})
            numbers = sorted(seq for seq in changes if after < seq <= committed)[:limit]
            return FeedPage([FeedEntry(seq, changes[seq]) for seq in numbers], committed, head.get("committed_at"))

    def feed_json(self, connection_id: str, *, after: int, limit: int) -> StoredFeedPage:
        entries, committed, synced_at = self.feed(connection_id, after=after, limit=limit)
        return StoredFeedPage(
            [
                StoredChange(
                    seq,
                    change.kind,
                    change.account_id,
                    change.transaction_id,
                    None
                    if change.synced is None
                    else synced_item_json(
                        synced_item_head(change.synced.model_dump(mode="json")),
                        change.transaction_id,
                        change.account_id,
                        change.synced.pending_transaction_id,
                    ),
                )
                for seq, change in entries
            ],
            committed,
            synced_at,
        )

    def append(
        self,
        connection_id: str,
        changes: Sequence[TransactionChange],
        *,
        owner: str,
        now: datetime,
        expected: int | None = None,
    ) -> int:
        with self._lock:
            head = self._head(connection_id)
            until = head.get("lease_until")
            held = until is not None and until >= epoch(now) and head.get("lease_owner") != owner
            if held or (expected is not None and head["seq"] != expected):
                raise ConflictError(
                    "another sync writes this connection or wrote it since it was read",
                    details={"operation": "sync_lease"},
                )
            head["committed"] = head["seq"]
            first, head["seq"] = head["seq"] + 1, head["seq"] + len(changes)
            last = head["seq"]
            head["lease_owner"], head["lease_until"] = owner, epoch(now) + self._lease_seconds
            numbered = list(enumerate(changes, first))
        for seq, change in numbered:
            self.write_hook(connection_id, seq)
            with self._lock:
                stored = self._transactions.setdefault(connection_id, {})
                key = (change.account_id, change.transaction_id)
                if change.synced is None:
                    stored.pop(key, None)
                else:
                    stored[key] = change.synced
                self._changes.setdefault(connection_id, {})[seq] = change
        with self._lock:
            if head.get("lease_owner") != owner:
                raise ConflictError("the sync lease was lost", details={"operation": "sync_commit"})
            head["committed"], head["committed_at"] = last, now
            head.pop("lease_owner", None)
            head.pop("lease_until", None)
            return int(head["committed"])

    def _head(self, connection_id: str) -> dict[str, Any]:
        """The feed's head (numbers, lease, next sync), created empty; call with the lock held."""
        return self._heads.setdefault(connection_id, {"seq": 0, "committed": 0})

    def write_hook(self, connection_id: str, seq: int) -> None:
        """Called before each change is written (tests make a writer die here)."""

    def purge(
        self,
        connection_id: str,
        account_ids: Collection[str] | None = None,
        *,
        balances_only: bool = False,
        transactions_only: bool = False,
    ) -> None:
        with self._lock:
            if account_ids is None and not (balances_only or transactions_only):
                for store in (
                    self._heads,
                    self._transactions,
                    self._changes,
                    self._accounts,
                    self._balances,
                    self._listings,
                ):
                    store.pop(connection_id, None)
                return
            wanted = set(account_ids) if account_ids is not None else set(self._accounts.get(connection_id, {}))
            if not transactions_only:
                for account_id in wanted:
                    self._balances.get(connection_id, {}).pop(account_id, None)
            if not balances_only:
                self._forget_transactions(connection_id, wanted)
            if not (balances_only or transactions_only):
                for account_id in wanted:
                    self._accounts.get(connection_id, {}).pop(account_id, None)

    def _forget_transactions(self, connection_id: str, wanted: set[str]) -> None:
        listings = self._listings.get(connection_id, {})
        for account_id in wanted:
            listings.pop(account_id, None)
        stored = self._transactions.get(connection_id, {})
        for key in [key for key in stored if key[0] in wanted]:
            del stored[key]
        changes = self._changes.get(connection_id, {})
        for seq in [seq for seq, change in changes.items() if change.account_id in wanted]:
            del changes[seq]

    def put_balances(
        self,
        connection_id: str,
        account_id: str,
        balances: Sequence[BankBalance],
        *,
        now: datetime,
        live: bool = False,
    ) -> bool:
        with self._lock:
            kept = self._balances.setdefault(connection_id, {})
            if live and account_id not in kept:
                return False
            kept[account_id] = (list(balances), Freshness(now, live))
            return True

    def balances(self, connection_id: str, account_id: str) -> tuple[list[BankBalance], datetime] | None:
        with self._lock:
            found = self._balances.get(connection_id, {}).get(account_id)
            return None if found is None else (list(found[0]), found[1].at)

    def freshness(self, connection_id: str, account_id: str) -> AccountFreshness:
        return self.freshness_many(connection_id, [account_id])[account_id]

    def freshness_many(self, connection_id: str, account_ids: Collection[str]) -> dict[str, AccountFreshness]:
        with self._lock:
            listings, balances = self._listings.get(connection_id, {}), self._balances.get(connection_id, {})
            return {
                account_id: AccountFreshness(
                    listings.get(account_id), None if account_id not in balances else balances[account_id][1]
                )
                for account_id in account_ids
            }

    def note_listing(self, connection_id: str, account_id: str, freshness: Freshness) -> bool:
        with self._lock:
            listings = self._listings.setdefault(connection_id, {})
            if freshness.live and account_id not in listings:
                return False
            listings[account_id] = freshness
            return True

    def remember_account(self, connection_id: str, account_id: str, *, identifier: str) -> None:
        with self._lock:
            self._accounts.setdefault(connection_id, {})[account_id] = identifier

    def accounts(self, connection_id: str) -> dict[str, str]:
        with self._lock:
            return dict(self._accounts.get(connection_id, {}))

    def schedule_sync(
        self,
        connection_id: str,
        *,
        user_id: str,
        bank_code: str,
        at: datetime,
        only_if_unscheduled: bool = False,
    ) -> bool:
        with self._lock:
            if only_if_unscheduled and "sync_shard" in self._heads.get(connection_id, {}):
                return False
            self._head(connection_id).update(
                sync_shard=sync_shard(connection_id),
                next_sync_at=epoch(at),
                user_id=user_id,
                bank_code=bank_code,
                schedule_id=f"schedule-{next(self._schedules)}",
            )
            return True

    def due_syncs(self, shard: int, *, due_before: datetime, page_size: int | None = None) -> Iterator[DueSync]:  # noqa: ARG002 - one page here
        with self._lock:
            due = sorted(
                (head["next_sync_at"], connection_id, head)
                for connection_id, head in self._heads.items()
                if head.get("sync_shard") == shard and head["next_sync_at"] <= epoch(due_before)
            )
            found = [
                DueSync(connection_id, head["user_id"], head["bank_code"], at, head["schedule_id"])
                for at, connection_id, head in due
            ]
        yield from found

    def count_due_syncs(self, shard: int, *, due_before: datetime) -> int:
        return sum(1 for _ in self.due_syncs(shard, due_before=due_before))

    def unschedule_sync(self, due: DueSync) -> bool:
        with self._lock:
            head = self._heads.get(due.connection_id)
            if head is None or head.get("schedule_id") != due.schedule_id:
                return False
            head.pop("sync_shard", None)
            head.pop("schedule_id", None)
            return True

    def claim_sync(self, connection_id: str, *, now: datetime, next_at: datetime) -> bool:
        with self._lock:
            head = self._heads.get(connection_id)
            if head is None or "sync_shard" not in head or head["next_sync_at"] > epoch(now):
                return False
            head["next_sync_at"] = epoch(next_at)
            return True

    def defer_sync(self, connection_id: str, *, at: datetime) -> None:
        with self._lock:
            head = self._heads.get(connection_id)
            if head is not None and "sync_shard" in head:
                head["next_sync_at"] = epoch(at)

    def claim_catchup(self, shard: int, *, now: datetime, next_at: datetime) -> bool:
        with self._lock:
            if self._catchups.get(shard, 0) > epoch(now):
                return False
            self._catchups[shard] = epoch(next_at)
            return True

    def scheduled(self, connection_id: str) -> int | None:
        """The head's next sync time (epoch seconds) while it is in the due index (tests)."""
        with self._lock:
            head = self._heads.get(connection_id, {})
            return head.get("next_sync_at") if "sync_shard" in head else None
