"""The connections repository: PynamoDB items in, pydantic :class:`~aisp.models.connection.Connection` out.

Rules every write follows:

* it is conditional on the ``version`` the caller read (or on the item not existing), and bumps it; a lost race
  raises :class:`~aisp.errors.ConflictError` and the stored item (its refresh token included) is left untouched;
* new tokens are written only through such a conditional ``UpdateItem``, so a failed write never loses the previous
  refresh token;
* ``refresh_shard``/``refresh_due_at`` (the sparse ``RefreshDueIndex``) exist only while the connection is ACTIVE
  with a refresh token; REAUTH_REQUIRED and REVOKED remove them; ``purge_at`` (TTL) is set on REVOKED only.

Tokens are sealed by a :class:`~aisp.crypto.TokenCipher` bound to ``(user_id, bank_code)`` and handed out only as a
separate :class:`~aisp.models.connection.TokenPair`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from pydantic import SecretStr

from aisp.dal.errors import translated
from aisp.dal.tables import ConnectionRecord
from aisp.errors import ConnectionNotFoundError, TokenIntegrityError
from aisp.models.connection import Connection, ConnectionStatus, ConsentSnapshot, TokenPair
from aisp.observability import tracer

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action

    from aisp.crypto import TokenCipher

__all__ = ["REFRESH_SHARDS", "DynamoConnectionRepository", "refresh_shard", "token_binding"]

# The refresher (issue 6) queries RefreshDueIndex once per shard: 0..REFRESH_SHARDS-1.
REFRESH_SHARDS: Final = 16


def refresh_shard(user_id: str, bank_code: str) -> int:
    """A stable shard in ``[0, REFRESH_SHARDS)`` for a connection (SHA-256 of user + bank, not Python's hash)."""
    digest = hashlib.sha256(f"{user_id}\x00{bank_code}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % REFRESH_SHARDS


def token_binding(user_id: str, bank_code: str) -> dict[str, str]:
    """What a token blob is bound to: moving it to another record makes it undecryptable."""
    return {"user_id": user_id, "bank_code": bank_code}


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _to_connection(record: ConnectionRecord) -> Connection:
    consent = ConsentSnapshot.model_validate_json(record.consent) if record.consent else None
    return Connection(
        connection_id=record.connection_id,
        user_id=record.user_id,
        bank_code=record.bank_code,
        status=ConnectionStatus(record.status),
        created_at=record.created_at,
        updated_at=record.updated_at,
        connected_at=record.connected_at,
        access_expires_at=record.access_expires_at,
        refresh_issued_at=record.refresh_issued_at,
        reauth_due_at=record.reauth_due_at,
        revoked_at=record.revoked_at,
        consent=consent,
        has_tokens=record.tokens is not None,
        version=int(record.version),
    )


class DynamoConnectionRepository:
    """Connections in ``ConnectionsTable``.

    Parameters
    ----------
    cipher
        Seals and opens token blobs; ``None`` = the container's KMS envelope cipher, built on first use (the connect
        function lists and deletes without ever creating a data key).
    """

    def __init__(self, cipher: TokenCipher | None = None) -> None:
        self._cipher = cipher

    def _token_cipher(self) -> TokenCipher:
        if self._cipher is None:
            from aisp.crypto import get_token_cipher  # noqa: PLC0415 - only token reads/writes need it

            self._cipher = get_token_cipher()
        return self._cipher

    # ------------------------------------------------------------------------------------------------------------
    # Reads
    # ------------------------------------------------------------------------------------------------------------

    def _get_record(self, user_id: str, bank_code: str) -> ConnectionRecord | None:
        with translated("get_connection", bank_code=bank_code):
            try:
                return ConnectionRecord.get(user_id, bank_code, consistent_read=True)
            except ConnectionRecord.DoesNotExist:
                return None

    @tracer.capture_method(capture_response=False)
    def find(self, user_id: str, bank_code: str) -> Connection | None:
        """The user's connection to ``bank_code``, or ``None`` (strongly consistent read)."""
        record = self._get_record(user_id, bank_code)
        return None if record is None else _to_connection(record)

    @tracer.capture_method(capture_response=False)
    def get_with_tokens(self, user_id: str, bank_code: str) -> tuple[Connection, TokenPair | None]:
        """The connection and its decrypted tokens (``None`` when it has none).

        Raises
        ------
        ConnectionNotFoundError
            No such connection for this user.
        TokenIntegrityError
            The stored blob does not decrypt for this record.
        """
        record = self._get_record(user_id, bank_code)
        if record is None:
            raise ConnectionNotFoundError("connection not found", details={"bank_code": bank_code})
        tokens = None if record.tokens is None else self._open(record.tokens, user_id, bank_code)
        return _to_connection(record), tokens

    @tracer.capture_method(capture_response=False)
    def list_for_user(self, user_id: str) -> list[Connection]:
        """Every connection of ``user_id`` (one Query on the partition key), ordered by bank code."""
        with translated("list_connections"):
            return [_to_connection(record) for record in ConnectionRecord.query(user_id, consistent_read=True)]

    # ------------------------------------------------------------------------------------------------------------
    # Writes (all conditional)
    # ------------------------------------------------------------------------------------------------------------

    @tracer.capture_method(capture_response=False)
    def create_pending(self, *, user_id: str, bank_code: str, connection_id: str, now: datetime) -> Connection:
        """Create a PENDING connection.

        Raises
        ------
        ConflictError
            The user already has a connection to this bank (created concurrently).
        """
        record = ConnectionRecord(
            user_id,
            bank_code,
            connection_id=connection_id,
            status=ConnectionStatus.PENDING.value,
            created_at=now,
            updated_at=now,
            version=1,
        )
        with translated("create_connection", bank_code=bank_code, connection_id=connection_id):
            record.save(condition=ConnectionRecord.user_id.does_not_exist())
        return _to_connection(record)

    @tracer.capture_method(capture_response=False)
    def reopen(self, connection: Connection, *, now: datetime) -> Connection:
        """A REVOKED connection starts a new journey: back to PENDING, no longer purged."""
        return self._update(
            connection.user_id,
            connection.bank_code,
            expected_version=connection.version,
            operation="reopen_connection",
            actions=[
                ConnectionRecord.status.set(ConnectionStatus.PENDING.value),
                ConnectionRecord.purge_at.remove(),
                ConnectionRecord.revoked_at.remove(),
            ],
            now=now,
        )

    @tracer.capture_method(capture_response=False)
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
        """Store the tokens of a fresh strong authentication and make the connection ACTIVE.

        ``expected_version`` is the version read before the exchange, or ``None`` if there was no item. Sets
        ``connected_at`` and ``refresh_issued_at`` to ``now`` and enters the refresh index when there is a refresh
        token.

        Raises
        ------
        ConflictError
            The item changed (or appeared) since it was read; nothing was written.
        """
        actions = [
            ConnectionRecord.connection_id.set(connection_id),
            ConnectionRecord.status.set(ConnectionStatus.ACTIVE.value),
            ConnectionRecord.created_at.set(ConnectionRecord.created_at | now),
            ConnectionRecord.connected_at.set(now),
            ConnectionRecord.refresh_issued_at.set(now),
            ConnectionRecord.reauth_due_at.set(reauth_due_at),
            ConnectionRecord.revoked_at.remove(),
            ConnectionRecord.purge_at.remove(),
            *self._token_actions(user_id, bank_code, tokens, access_expires_at),
        ]
        return self._update(
            user_id,
            bank_code,
            expected_version=expected_version,
            operation="activate_connection",
            actions=actions,
            now=now,
        )

    @tracer.capture_method(capture_response=False)
    def store_refreshed_tokens(
        self, connection: Connection, *, tokens: TokenPair, access_expires_at: datetime, now: datetime
    ) -> Connection:
        """Replace the tokens after a refresh (on-demand, issue 5, or the refresher, issue 6).

        Conditional on ``connection.version`` and on the connection still being ACTIVE.

        Raises
        ------
        ConflictError
            Someone else wrote first (refreshed, revoked, reconnected); the stored tokens are untouched.
        """
        return self._update(
            connection.user_id,
            connection.bank_code,
            expected_version=connection.version,
            operation="store_refreshed_tokens",
            actions=self._token_actions(connection.user_id, connection.bank_code, tokens, access_expires_at),
            now=now,
            extra_condition=ConnectionRecord.status == ConnectionStatus.ACTIVE.value,
        )

    @tracer.capture_method(capture_response=False)
    def mark_reauth_required(self, connection: Connection, *, now: datetime) -> Connection:
        """The bank refused the refresh token: REAUTH_REQUIRED, out of the refresh index, tokens forgotten."""
        return self._update(
            connection.user_id,
            connection.bank_code,
            expected_version=connection.version,
            operation="mark_reauth_required",
            actions=[
                ConnectionRecord.status.set(ConnectionStatus.REAUTH_REQUIRED.value),
                ConnectionRecord.tokens.remove(),
                ConnectionRecord.refresh_shard.remove(),
                ConnectionRecord.refresh_due_at.remove(),
            ],
            now=now,
        )

    @tracer.capture_method(capture_response=False)
    def revoke(self, connection: Connection, *, now: datetime, purge_at: datetime) -> Connection:
        """The user deleted the connection: REVOKED, tokens and consent forgotten, out of the index, purged later."""
        return self._update(
            connection.user_id,
            connection.bank_code,
            expected_version=connection.version,
            operation="revoke_connection",
            actions=[
                ConnectionRecord.status.set(ConnectionStatus.REVOKED.value),
                ConnectionRecord.revoked_at.set(now),
                ConnectionRecord.purge_at.set(purge_at),
                ConnectionRecord.tokens.remove(),
                ConnectionRecord.consent.remove(),
                ConnectionRecord.access_expires_at.remove(),
                ConnectionRecord.refresh_shard.remove(),
                ConnectionRecord.refresh_due_at.remove(),
            ],
            now=now,
        )

    # ------------------------------------------------------------------------------------------------------------
    # Internals
    # ------------------------------------------------------------------------------------------------------------

    def _token_actions(
        self, user_id: str, bank_code: str, tokens: TokenPair, access_expires_at: datetime
    ) -> list[Action]:
        actions: list[Action] = [
            ConnectionRecord.tokens.set(self._seal(tokens, user_id, bank_code)),
            ConnectionRecord.access_expires_at.set(access_expires_at),
        ]
        if tokens.refresh_token is not None:
            actions += [
                ConnectionRecord.refresh_shard.set(refresh_shard(user_id, bank_code)),
                ConnectionRecord.refresh_due_at.set(_epoch(access_expires_at)),
            ]
        else:
            actions += [ConnectionRecord.refresh_shard.remove(), ConnectionRecord.refresh_due_at.remove()]
        return actions

    def _update(
        self,
        user_id: str,
        bank_code: str,
        *,
        expected_version: int | None,
        operation: str,
        actions: list[Action],
        now: datetime,
        extra_condition: Condition | None = None,
    ) -> Connection:
        condition: Condition
        if expected_version is None:
            condition = ConnectionRecord.user_id.does_not_exist()
            new_version = 1
        else:
            condition = ConnectionRecord.version == expected_version
            new_version = expected_version + 1
        if extra_condition is not None:
            condition &= extra_condition
        record = ConnectionRecord(user_id, bank_code)
        all_actions = [*actions, ConnectionRecord.updated_at.set(now), ConnectionRecord.version.set(new_version)]
        with translated(operation, bank_code=bank_code, expected_version=expected_version):
            record.update(actions=all_actions, condition=condition)
        return _to_connection(record)

    def _seal(self, tokens: TokenPair, user_id: str, bank_code: str) -> bytes:
        payload: dict[str, Any] = {"access_token": tokens.access_token.get_secret_value()}
        if tokens.refresh_token is not None:
            payload["refresh_token"] = tokens.refresh_token.get_secret_value()
        plaintext = json.dumps(payload, separators=(",", ":")).encode()
        return self._token_cipher().encrypt(plaintext, binding=token_binding(user_id, bank_code))

    def _open(self, blob: bytes, user_id: str, bank_code: str) -> TokenPair:
        plaintext = self._token_cipher().decrypt(blob, binding=token_binding(user_id, bank_code))
        try:
            payload = json.loads(plaintext)
            refresh = payload.get("refresh_token")
            return TokenPair(
                access_token=SecretStr(payload["access_token"]),
                refresh_token=None if refresh is None else SecretStr(refresh),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TokenIntegrityError("token payload is malformed", details={"bank_code": bank_code}) from None
