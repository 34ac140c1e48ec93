"""An in-memory stand-in for the connections table, for the refresher benchmark only.

Why: moto parses every ``UpdateExpression`` in Python at a cost that grows with its number of clauses; a token write
takes it 10-40 ms of CPU in one server process, so a moto-backed run measures moto (about 35 connections/s here,
whatever the refresher does), not the refresher. Real DynamoDB answers a single-item write in a few milliseconds
and scales with concurrent callers.

What it keeps from the real repository (:class:`aisp.dal.DynamoConnectionRepository`): the same methods and the same
conditions (lease free or expired and still due; version and lease owner on the token write; ACTIVE on a failure;
notices claimed once), atomically per call, and the same token sealing (the real KMS-envelope AES-GCM cipher, through
the repository's own seal/open). What it models: each call costs one network round trip (``latency`` seconds, GIL
released, like a socket wait) and pages of ``page_size`` keys for a query. What it leaves out: PynamoDB/botocore's
request building and parsing (``bench.refresher --dynamodb moto`` runs the real repository for that comparison).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from aisp import wiring
from aisp.dal import DynamoConnectionRepository, refresh_shard
from aisp.errors import ConflictError, ConnectionNotFoundError, TokenIntegrityError
from aisp.models.connection import Connection, ConnectionStatus, TokenPair
from aisp.models.refresh import ConnectionKey, LeasedConnection, ReauthNotice


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


@dataclass
class _Item:
    connection: Connection
    sealed: bytes | None
    refresh_shard: int | None = None
    refresh_due_at: int | None = None
    lease_until: int | None = None
    lease_owner: str | None = None
    refresh_failures: int = 0
    refresh_last_error: str | None = None
    expiry_notices: set[int] = field(default_factory=set)
    reauth_notice: str | None = None


class ModelConnections:
    """The refresher's repository over a dict, one simulated round trip per call."""

    def __init__(self, *, latency: float, page_size: int = 500) -> None:
        self._latency = latency
        self._page_size = page_size
        self._codec = DynamoConnectionRepository(cipher=wiring.token_cipher)
        self._items: dict[ConnectionKey, _Item] = {}
        self._lock = threading.Lock()

    def _round_trip(self) -> None:
        if self._latency > 0:
            time.sleep(self._latency)

    # -- seeding and reads ------------------------------------------------------------------------------------------

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
        key = ConnectionKey(user_id, bank_code)
        connection = Connection(
            connection_id=connection_id,
            user_id=user_id,
            bank_code=bank_code,
            status=ConnectionStatus.ACTIVE,
            created_at=now,
            updated_at=now,
            connected_at=now,
            access_expires_at=access_expires_at,
            refresh_issued_at=now,
            reauth_due_at=reauth_due_at,
            has_tokens=True,
            version=1,
        )
        item = _Item(
            connection=connection,
            sealed=self._codec._seal(tokens, user_id, bank_code),  # noqa: SLF001 - the real sealing
            refresh_shard=refresh_shard(user_id, bank_code),
            refresh_due_at=_epoch(access_expires_at),
        )
        with self._lock:
            if expected_version is None and key in self._items:
                raise ConflictError("conditional write failed")
            self._items[key] = item
        return connection

    def find(self, user_id: str, bank_code: str) -> Connection | None:
        self._round_trip()
        with self._lock:
            item = self._items.get(ConnectionKey(user_id, bank_code))
            return None if item is None else item.connection

    def get_with_tokens(self, user_id: str, bank_code: str) -> tuple[Connection, TokenPair | None]:
        self._round_trip()
        with self._lock:
            item = self._items.get(ConnectionKey(user_id, bank_code))
        if item is None:
            raise ConnectionNotFoundError("connection not found")
        tokens = None if item.sealed is None else self._codec._open(item.sealed, user_id, bank_code)  # noqa: SLF001
        return item.connection, tokens

    def due_keys(self, shard: int, *, due_before: int, page_size: int | None = None) -> Iterator[ConnectionKey]:
        with self._lock:
            due = sorted(
                (item.refresh_due_at, key)
                for key, item in self._items.items()
                if item.refresh_shard == shard and item.refresh_due_at is not None and item.refresh_due_at <= due_before
            )
        size = page_size or self._page_size
        for start in range(0, len(due), size):
            self._round_trip()
            for _, key in due[start : start + size]:
                yield key

    def count_due(self, shard: int, *, due_before: int) -> int:
        return sum(1 for _ in self.due_keys(shard, due_before=due_before))

    # -- the refresher's conditional writes ---------------------------------------------------------------------------

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
        self._round_trip()
        now_epoch = _epoch(now)
        with self._lock:
            item = self._items.get(key)
            if item is None or (item.lease_until is not None and item.lease_until > now_epoch):
                return None
            if due_before is not None and (item.refresh_due_at is None or item.refresh_due_at > due_before):
                return None
            if expected_version is not None and (
                item.connection.version != expected_version or item.connection.status is not ConnectionStatus.ACTIVE
            ):
                return None
            item.lease_until, item.lease_owner = now_epoch + lease_seconds, owner
            snapshot = (
                item.connection,
                item.sealed,
                item.refresh_due_at,
                item.refresh_failures,
                set(item.expiry_notices),
            )
            notice = item.reauth_notice
        connection, sealed, due_at, failures, notices = snapshot
        tokens, unreadable = None, False
        if sealed is not None:
            try:
                tokens = self._codec._open(sealed, key.user_id, key.bank_code)  # noqa: SLF001
            except TokenIntegrityError:
                unreadable = True
        return LeasedConnection(
            connection=connection,
            tokens=tokens,
            tokens_unreadable=unreadable,
            lease_owner=owner,
            lease_until=now_epoch + lease_seconds,
            refresh_due_at=due_at,
            refresh_failures=failures,
            expiry_notices=frozenset(notices),
            reauth_notice=None if notice is None else ReauthNotice(notice),
        )

    def release_lease(self, key: ConnectionKey, *, owner: str) -> bool:
        self._round_trip()
        with self._lock:
            item = self._items.get(key)
            if item is None or item.lease_owner != owner:
                return False
            item.lease_until = item.lease_owner = None
            return True

    def store_refreshed_tokens(
        self,
        connection: Connection,
        *,
        tokens: TokenPair,
        access_expires_at: datetime,
        now: datetime,
        lease_owner: str | None = None,
    ) -> Connection:
        sealed = self._codec._seal(tokens, connection.user_id, connection.bank_code)  # noqa: SLF001
        self._round_trip()
        key = ConnectionKey(connection.user_id, connection.bank_code)
        with self._lock:
            item = self._items.get(key)
            if (
                item is None
                or item.connection.version != connection.version
                or item.connection.status is not ConnectionStatus.ACTIVE
                or (lease_owner is not None and item.lease_owner != lease_owner)
            ):
                raise ConflictError("conditional write failed")
            item.connection = item.connection.model_copy(
                update={"access_expires_at": access_expires_at, "updated_at": now, "version": connection.version + 1}
            )
            item.sealed = sealed
            item.refresh_due_at = _epoch(access_expires_at)
            item.lease_until = item.lease_owner = item.refresh_last_error = None
            item.refresh_failures = 0
            return item.connection

    def record_refresh_failure(
        self, key: ConnectionKey, *, owner: str, failures: int, error: str, next_due_at: int
    ) -> bool:
        self._round_trip()
        with self._lock:
            item = self._items.get(key)
            if item is None or item.lease_owner != owner or item.connection.status is not ConnectionStatus.ACTIVE:
                return False
            item.refresh_failures, item.refresh_last_error, item.refresh_due_at = failures, error, next_due_at
            item.lease_until = item.lease_owner = None
            return True

    def mark_reauth_required(self, connection: Connection, *, now: datetime, notify: bool = False) -> Connection:
        self._round_trip()
        key = ConnectionKey(connection.user_id, connection.bank_code)
        with self._lock:
            item = self._items.get(key)
            if item is None or item.connection.version != connection.version:
                raise ConflictError("conditional write failed")
            item.connection = item.connection.model_copy(
                update={
                    "status": ConnectionStatus.REAUTH_REQUIRED,
                    "has_tokens": False,
                    "updated_at": now,
                    "version": connection.version + 1,
                }
            )
            item.sealed = None
            item.lease_until = item.lease_owner = None
            if notify:
                item.reauth_notice, item.refresh_due_at = ReauthNotice.PENDING.value, _epoch(now)
            else:
                item.refresh_shard = item.refresh_due_at = None
            return item.connection

    def claim_reauth_notice(self, key: ConnectionKey, *, now: datetime) -> Connection | None:
        self._round_trip()
        with self._lock:
            item = self._items.get(key)
            if item is None or item.reauth_notice != ReauthNotice.PENDING.value:
                return None
            item.reauth_notice = ReauthNotice.SENT.value
            item.refresh_shard = item.refresh_due_at = item.lease_until = item.lease_owner = None
            return item.connection

    def restore_reauth_notice(self, key: ConnectionKey, *, retry_due_at: int) -> bool:
        self._round_trip()
        with self._lock:
            item = self._items.get(key)
            if item is None or item.reauth_notice != ReauthNotice.SENT.value:
                return False
            item.reauth_notice = ReauthNotice.PENDING.value
            item.refresh_shard, item.refresh_due_at = refresh_shard(*key), retry_due_at
            return True

    def claim_expiry_notices(self, key: ConnectionKey, thresholds: Collection[int]) -> bool:
        self._round_trip()
        with self._lock:
            item = self._items.get(key)
            if item is None or item.connection.status is not ConnectionStatus.ACTIVE:
                return False
            if item.expiry_notices & set(thresholds):
                return False
            item.expiry_notices |= set(thresholds)
            return True

    def release_expiry_notices(self, key: ConnectionKey, thresholds: Collection[int]) -> None:
        self._round_trip()
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                item.expiry_notices -= set(thresholds)
