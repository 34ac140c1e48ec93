"""The connections repository: PynamoDB items in, pydantic :class:`~aisp.models.connection.Connection` out.

Every write is conditional (on the ``version`` read, or on the item not existing) and bumps the version; a lost race
raises :class:`~aisp.errors.ConflictError` and leaves the stored item, its refresh token included, untouched. The
refresh lease and the refresher's bookkeeping (failures, notices) carry their own conditions and never bump the
version. The record: ``docs/connect.md`` (What is stored); the lease: ``docs/refresh.md`` (The lease).

Tokens are sealed by a :class:`~aisp.aws.kms.TokenCipher` bound to ``(user_id, bank_code)`` and handed out only as a
separate :class:`~aisp.models.connection.TokenPair`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from pydantic import SecretStr

from aisp.clock import epoch
from aisp.dal.errors import translated
from aisp.dal.tables import COMPLETION_KEY_PREFIX, CompletionRecord, ConnectionRecord
from aisp.errors import ConflictError, ConnectionNotFoundError, InvalidRequestError, TokenIntegrityError
from aisp.models.connection import (
    Completion,
    CompletionOutcome,
    Connection,
    ConnectionStatus,
    ConsentSnapshot,
    PendingAuthorization,
    StatusReason,
    TokenPair,
)
from aisp.models.refresh import REFRESH_SHARDS, ConnectionKey, LeasedConnection, ReauthNotice, refresh_shard
from aisp.observability import logger, tracer

if TYPE_CHECKING:
    from collections.abc import Callable

    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action
    from pynamodb.transactions import TransactWrite

    from aisp.aws.kms import TokenCipher

__all__ = [
    "REFRESH_SHARDS",
    "DynamoConnectionRepository",
    "open_tokens",
    "refresh_shard",
    "seal_tokens",
    "token_binding",
]


def token_binding(user_id: str, bank_code: str) -> dict[str, str]:
    """What a token blob is bound to: moving it to another record makes it undecryptable."""
    return {"user_id": user_id, "bank_code": bank_code}


def seal_tokens(cipher: TokenCipher, tokens: TokenPair, user_id: str, bank_code: str) -> bytes:
    """The blob a record stores for ``tokens``: their JSON sealed by ``cipher``, bound to ``(user_id, bank_code)``."""
    payload: dict[str, Any] = {"access_token": tokens.access_token.get_secret_value()}
    if tokens.refresh_token is not None:
        payload["refresh_token"] = tokens.refresh_token.get_secret_value()
    plaintext = json.dumps(payload, separators=(",", ":")).encode()
    return cipher.encrypt(plaintext, binding=token_binding(user_id, bank_code))


def open_tokens(cipher: TokenCipher, blob: bytes, user_id: str, bank_code: str) -> TokenPair:
    """The tokens of a blob :func:`seal_tokens` made for this record; raises ``TokenIntegrityError`` otherwise."""
    plaintext = cipher.decrypt(blob, binding=token_binding(user_id, bank_code))
    try:
        payload = json.loads(plaintext)
        refresh = payload.get("refresh_token")
        return TokenPair(
            access_token=SecretStr(payload["access_token"]),
            refresh_token=None if refresh is None else SecretStr(refresh),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise TokenIntegrityError("token payload is malformed", details={"bank_code": bank_code}) from None


# A used or expired completion value stays this long after its deadline, so a late try is told apart from a forgery
# (and, if it is another user's, still revokes what it would have activated).
_COMPLETION_KEPT: Final = timedelta(days=1)


def _lease_free(now_epoch: int) -> Condition:
    free: Condition = ConnectionRecord.lease_until.does_not_exist() | (ConnectionRecord.lease_until <= now_epoch)
    return free


# What a new strong authentication or a deletion wipes of the refresher's bookkeeping.
def _bookkeeping_removals() -> list[Action]:
    return [
        ConnectionRecord.lease_until.remove(),
        ConnectionRecord.lease_owner.remove(),
        ConnectionRecord.refresh_failures.remove(),
        ConnectionRecord.refresh_last_error.remove(),
        ConnectionRecord.expiry_notices.remove(),
        ConnectionRecord.reauth_notice.remove(),
        ConnectionRecord.reauth_notified_at.remove(),
    ]


def _to_connection(record: ConnectionRecord) -> Connection:
    consent = ConsentSnapshot.model_validate_json(record.consent) if record.consent else None
    pending = PendingAuthorization.model_validate_json(record.pending) if record.pending else None
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
        status_reason=None if record.status_reason is None else StatusReason(record.status_reason),
        journey_expires_at=record.journey_expires_at,
        pending=pending,
    )


def _dueepoch(*moments: datetime | None) -> int | None:
    """``refresh_due_at`` for the earliest of ``moments`` (``None`` when there is none: out of the index)."""
    present = [moment for moment in moments if moment is not None]
    return epoch(min(present)) if present else None


def _index_actions(user_id: str, bank_code: str, due: int | None) -> list[Action]:
    if due is None:
        return [ConnectionRecord.refresh_shard.remove(), ConnectionRecord.refresh_due_at.remove()]
    return [
        ConnectionRecord.refresh_shard.set(refresh_shard(user_id, bank_code)),
        ConnectionRecord.refresh_due_at.set(due),
    ]


def _pending_removals() -> list[Action]:
    return [
        ConnectionRecord.pending_tokens.remove(),
        ConnectionRecord.pending.remove(),
        ConnectionRecord.authorization_id.remove(),
    ]


def _to_completion(record: CompletionRecord) -> Completion:
    return Completion(
        completion_hash=record.key.removeprefix(COMPLETION_KEY_PREFIX),
        user_id=record.user_id,
        bank_code=record.bank_code,
        connection_id=record.connection_id,
        authorization_id=record.authorization_id,
        created_at=record.created_at,
        valid_until=record.valid_until,
        consumed_at=record.consumed_at,
        outcome=None if record.outcome is None else CompletionOutcome(record.outcome),
    )


def _transact(operation: str, bank_code: str, build: Callable[[TransactWrite], None]) -> None:
    """One ``TransactWriteItems`` over the models' own client: every write happens, or none (a failed condition
    anywhere → :class:`ConflictError`)."""
    from pynamodb.transactions import TransactWrite  # noqa: PLC0415 - the two writers of a login only

    client = ConnectionRecord._get_connection().connection  # noqa: SLF001 - share the models' botocore client
    with translated(operation, bank_code=bank_code), TransactWrite(connection=client) as transaction:
        build(transaction)


class DynamoConnectionRepository:
    """Connections in ``ConnectionsTable``.

    Parameters
    ----------
    cipher
        Gives the cipher that seals and opens token blobs, called on the first token read or write (the connect
        function lists and deletes without ever creating a data key).
    """

    def __init__(self, cipher: Callable[[], TokenCipher]) -> None:
        self._cipher = cipher

    def _token_cipher(self) -> TokenCipher:
        return self._cipher()

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

    @tracer.capture_method(capture_response=False)
    def get_with_all_tokens(
        self, user_id: str, bank_code: str
    ) -> tuple[Connection, TokenPair | None, TokenPair | None]:
        """The connection, its serving tokens and those of its authorization awaiting completion (decrypted;
        ``None`` where it has none).

        Raises
        ------
        ConnectionNotFoundError
            No such connection for this user.
        TokenIntegrityError
            A stored blob does not decrypt for this record.
        """
        record = self._get_record(user_id, bank_code)
        if record is None:
            raise ConnectionNotFoundError("connection not found", details={"bank_code": bank_code})
        serving = None if record.tokens is None else self._open(record.tokens, user_id, bank_code)
        pending = None if record.pending_tokens is None else self._open(record.pending_tokens, user_id, bank_code)
        return _to_connection(record), serving, pending

    @tracer.capture_method(capture_response=False)
    def find_completion(self, completion_hash: str) -> Completion | None:
        """The completion stored under ``completion_hash`` (strongly consistent), or ``None``."""
        with translated("get_completion"):
            try:
                record = CompletionRecord.get(COMPLETION_KEY_PREFIX + completion_hash, consistent_read=True)
            except CompletionRecord.DoesNotExist:
                return None
        return _to_completion(record)

    # ------------------------------------------------------------------------------------------------------------
    # Writes (all conditional)
    # ------------------------------------------------------------------------------------------------------------

    @tracer.capture_method(capture_response=False)
    def create_pending(
        self,
        *,
        user_id: str,
        bank_code: str,
        connection_id: str,
        now: datetime,
        journey_expires_at: datetime | None = None,
    ) -> Connection:
        """Create a PENDING connection whose login link expires at ``journey_expires_at``.

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
            journey_expires_at=journey_expires_at,
        )
        with translated("create_connection", bank_code=bank_code, connection_id=connection_id):
            record.save(condition=ConnectionRecord.user_id.does_not_exist())
        return _to_connection(record)

    @tracer.capture_method(capture_response=False)
    def reopen(
        self, connection: Connection, *, now: datetime, journey_expires_at: datetime | None = None
    ) -> Connection:
        """A REVOKED or FAILED connection starts a new journey: back to PENDING, no longer purged."""
        return self._update(
            connection.user_id,
            connection.bank_code,
            expected_version=connection.version,
            operation="reopen_connection",
            actions=[
                ConnectionRecord.status.set(ConnectionStatus.PENDING.value),
                ConnectionRecord.status_reason.remove(),
                ConnectionRecord.purge_at.remove(),
                ConnectionRecord.revoked_at.remove(),
                ConnectionRecord.journey_expires_at.set(journey_expires_at)
                if journey_expires_at is not None
                else ConnectionRecord.journey_expires_at.remove(),
            ],
            now=now,
        )

    @tracer.capture_method(capture_response=False)
    def note_journey(self, connection: Connection, *, journey_expires_at: datetime) -> bool:
        """A PENDING connection's new login link expires at ``journey_expires_at`` (bookkeeping: no version bump).

        ``False`` when the connection is no longer PENDING (a callback got there first).
        """
        try:
            with translated("note_journey", bank_code=connection.bank_code):
                ConnectionRecord(connection.user_id, connection.bank_code).update(
                    actions=[ConnectionRecord.journey_expires_at.set(journey_expires_at)],
                    condition=ConnectionRecord.status == ConnectionStatus.PENDING.value,
                )
        except ConflictError:
            return False
        return True

    @tracer.capture_method(capture_response=False)
    def fail_journey(self, connection: Connection, *, reason: StatusReason, now: datetime) -> Connection:
        """A first login ended without tokens: PENDING → FAILED with ``reason``.

        Raises
        ------
        ConflictError
            The connection changed since it was read, or is not PENDING any more; nothing was written.
        """
        return self._update(
            connection.user_id,
            connection.bank_code,
            expected_version=connection.version,
            operation="fail_journey",
            actions=[
                ConnectionRecord.status.set(ConnectionStatus.FAILED.value),
                ConnectionRecord.status_reason.set(reason.value),
                ConnectionRecord.journey_expires_at.remove(),
            ],
            now=now,
            extra_condition=ConnectionRecord.status == ConnectionStatus.PENDING.value,
        )

    @tracer.capture_method(capture_response=False)
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
        """Seal the tokens of a fresh login beside the serving ones, awaiting completion, and store its completion
        value (hashed), in one transaction.

        The connection becomes AUTHORIZED unless it is ACTIVE (its tokens keep serving until the completion). It
        enters the refresh index due at the completion deadline at the latest, so the refresher revokes what is not
        completed. A previous authorization awaiting completion is replaced (the caller revokes its tokens).

        Raises
        ------
        ConflictError
            The connection changed (or appeared) since it was read; nothing was written.
        """
        current = None if expected_version is None else self.find(user_id, bank_code)
        status = current.status if current is not None else ConnectionStatus.PENDING
        serving_due = None
        if current is not None and status is ConnectionStatus.ACTIVE and current.has_tokens:
            serving_due = current.access_expires_at
        actions: list[Action] = [
            ConnectionRecord.connection_id.set(connection_id),
            ConnectionRecord.created_at.set(ConnectionRecord.created_at | now),
            ConnectionRecord.pending_tokens.set(self._seal(tokens, user_id, bank_code)),
            ConnectionRecord.pending.set(pending.model_dump_json()),
            ConnectionRecord.authorization_id.set(pending.authorization_id),
            *_index_actions(user_id, bank_code, _dueepoch(serving_due, pending.expires_at)),
        ]
        if status is not ConnectionStatus.ACTIVE:
            actions += [
                ConnectionRecord.status.set(ConnectionStatus.AUTHORIZED.value),
                ConnectionRecord.status_reason.remove(),
                ConnectionRecord.journey_expires_at.remove(),
            ]
        completion = CompletionRecord(
            COMPLETION_KEY_PREFIX + completion_hash,
            user_id=user_id,
            bank_code=bank_code,
            connection_id=connection_id,
            authorization_id=pending.authorization_id,
            created_at=now,
            valid_until=pending.expires_at,
            purge_at=pending.expires_at + _COMPLETION_KEPT,
        )
        condition, new_version = self._version_condition(expected_version)
        record = ConnectionRecord(user_id, bank_code)
        all_actions = [*actions, ConnectionRecord.updated_at.set(now), ConnectionRecord.version.set(new_version)]

        def build(transaction: TransactWrite) -> None:
            transaction.save(completion, condition=CompletionRecord.key.does_not_exist())
            transaction.update(record, actions=all_actions, condition=condition)

        _transact("authorize_connection", bank_code, build)
        return self._read(user_id, bank_code)

    @tracer.capture_method(capture_response=False)
    def complete_authorization(self, connection: Connection, *, completion_hash: str, now: datetime) -> Connection:
        """Activate the authorization awaiting completion and use up its completion value, in one transaction.

        The pending tokens become the serving ones (moved as sealed, never decrypted here), with the dates of their
        strong authentication; the connection is ACTIVE and due for refresh at its access expiry.

        Raises
        ------
        ConflictError
            The completion was used, expired or is another user's, or the connection changed since it was read, or
            holds another authorization; nothing was written.
        """
        pending = connection.pending
        if pending is None:
            raise ConflictError("no authorization awaits completion", details={"bank_code": connection.bank_code})
        user_id, bank_code = connection.user_id, connection.bank_code
        access_due = pending.access_expires_at if pending.has_refresh_token else None
        actions: list[Action] = [
            ConnectionRecord.status.set(ConnectionStatus.ACTIVE.value),
            ConnectionRecord.status_reason.remove(),
            ConnectionRecord.tokens.set(ConnectionRecord.pending_tokens),
            ConnectionRecord.access_expires_at.set(pending.access_expires_at),
            ConnectionRecord.connected_at.set(pending.authorized_at),
            ConnectionRecord.refresh_issued_at.set(pending.authorized_at),
            ConnectionRecord.reauth_due_at.set(pending.reauth_due_at),
            ConnectionRecord.revoked_at.remove(),
            ConnectionRecord.purge_at.remove(),
            ConnectionRecord.journey_expires_at.remove(),
            *_pending_removals(),
            # A new SCA: a new reauth_due_at, so the expiry notices start over; a refresh in flight loses its lease.
            *_bookkeeping_removals(),
            *_index_actions(user_id, bank_code, _dueepoch(access_due)),
            ConnectionRecord.updated_at.set(now),
            ConnectionRecord.version.set(connection.version + 1),
        ]
        condition = (ConnectionRecord.version == connection.version) & (
            ConnectionRecord.authorization_id == pending.authorization_id
        )
        completion_condition = (
            CompletionRecord.consumed_at.does_not_exist()
            & (CompletionRecord.user_id == user_id)
            & (CompletionRecord.bank_code == bank_code)
            & (CompletionRecord.authorization_id == pending.authorization_id)
            & (CompletionRecord.valid_until > now)
        )

        def build(transaction: TransactWrite) -> None:
            transaction.update(
                CompletionRecord(COMPLETION_KEY_PREFIX + completion_hash),
                actions=[
                    CompletionRecord.consumed_at.set(now),
                    CompletionRecord.outcome.set(CompletionOutcome.COMPLETED.value),
                ],
                condition=completion_condition,
            )
            transaction.update(ConnectionRecord(user_id, bank_code), actions=actions, condition=condition)

        _transact("complete_authorization", bank_code, build)
        return self._read(user_id, bank_code)

    @tracer.capture_method(capture_response=False)
    def consume_completion(self, completion_hash: str, *, outcome: CompletionOutcome, now: datetime) -> bool:
        """Use up a completion value without activating anything (rejected, expired); ``False`` if already used."""
        try:
            with translated("consume_completion"):
                CompletionRecord(COMPLETION_KEY_PREFIX + completion_hash).update(
                    actions=[CompletionRecord.consumed_at.set(now), CompletionRecord.outcome.set(outcome.value)],
                    condition=CompletionRecord.key.exists() & CompletionRecord.consumed_at.does_not_exist(),
                )
        except ConflictError:
            return False
        return True

    @tracer.capture_method(capture_response=False)
    def discard_authorization(
        self, connection: Connection, *, authorization_id: str, reason: StatusReason, now: datetime
    ) -> Connection | None:
        """Forget an authorization that will not be completed (its tokens were revoked at the bank).

        The connection takes the authorization's uncompleted outcome (:meth:`PendingAuthorization.outcome`; an
        ACTIVE one stays ACTIVE with its serving tokens) and its refresh index entry follows. Conditional on the
        record still holding ``authorization_id``; ``None`` when it does not (completed, replaced or deleted).
        """
        pending = connection.pending
        if pending is None or pending.authorization_id != authorization_id:
            return None
        user_id, bank_code = connection.user_id, connection.bank_code
        actions: list[Action] = _pending_removals()
        if connection.status is ConnectionStatus.ACTIVE:
            actions += _index_actions(user_id, bank_code, _dueepoch(connection.access_expires_at))
        else:
            status, status_reason = pending.outcome(reason)
            actions += [
                ConnectionRecord.status.set(status.value),
                ConnectionRecord.status_reason.set(status_reason.value)
                if status_reason is not None
                else ConnectionRecord.status_reason.remove(),
                *_index_actions(user_id, bank_code, None),
            ]
        try:
            return self._update(
                user_id,
                bank_code,
                expected_version=None,
                operation="discard_authorization",
                actions=actions,
                now=now,
                extra_condition=ConnectionRecord.authorization_id == authorization_id,
                bump=True,
            )
        except ConflictError:
            return None

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
            # A new SCA: a new reauth_due_at, so the expiry notices start over; a refresh in flight loses its lease.
            *_bookkeeping_removals(),
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
        self,
        connection: Connection,
        *,
        tokens: TokenPair,
        access_expires_at: datetime,
        now: datetime,
        lease_owner: str | None = None,
    ) -> Connection:
        """Replace the tokens after a refresh (on-demand, issue 5, or the refresher, issue 6).

        Conditional on ``connection.version``, on the connection still being ACTIVE and, with ``lease_owner``, on
        still holding the lease, which this write releases; the failure counter is reset and the next refresh is
        due at the new access expiry.

        Raises
        ------
        ConflictError
            Someone else wrote first (refreshed, revoked, reconnected) or the lease was lost; the stored tokens are
            untouched.
        """
        condition: Condition = ConnectionRecord.status == ConnectionStatus.ACTIVE.value
        if lease_owner is not None:
            condition &= ConnectionRecord.lease_owner == lease_owner
        return self._update(
            connection.user_id,
            connection.bank_code,
            expected_version=connection.version,
            operation="store_refreshed_tokens",
            actions=[
                *self._token_actions(
                    connection.user_id, connection.bank_code, tokens, access_expires_at, connection.pending
                ),
                ConnectionRecord.lease_until.remove(),
                ConnectionRecord.lease_owner.remove(),
                ConnectionRecord.refresh_failures.remove(),
                ConnectionRecord.refresh_last_error.remove(),
            ],
            now=now,
            extra_condition=condition,
        )

    @tracer.capture_method(capture_response=False)
    def mark_reauth_required(
        self,
        connection: Connection,
        *,
        now: datetime,
        notify: bool = False,
        reason: StatusReason = StatusReason.ACCESS_REVOKED,
    ) -> Connection:
        """The bank refused the refresh token: REAUTH_REQUIRED, tokens forgotten, lease released.

        Without ``notify`` the record leaves the refresh index. With ``notify`` it stays there, due ``now``, with a
        PENDING ``reauth_notice``: the refresher sends the ``ConnectionReauthRequired`` event
        (:meth:`claim_reauth_notice`), which takes it out of the index. Conditional on the version, so only one
        writer ever makes the transition (and so only one event is sent).
        """
        actions: list[Action] = [
            ConnectionRecord.status.set(ConnectionStatus.REAUTH_REQUIRED.value),
            ConnectionRecord.status_reason.set(reason.value),
            ConnectionRecord.tokens.remove(),
            ConnectionRecord.lease_until.remove(),
            ConnectionRecord.lease_owner.remove(),
            ConnectionRecord.refresh_failures.remove(),
        ]
        if notify:
            actions += [
                ConnectionRecord.reauth_notice.set(ReauthNotice.PENDING.value),
                ConnectionRecord.refresh_shard.set(refresh_shard(connection.user_id, connection.bank_code)),
                ConnectionRecord.refresh_due_at.set(epoch(now)),
            ]
        else:
            actions += [ConnectionRecord.refresh_shard.remove(), ConnectionRecord.refresh_due_at.remove()]
        return self._update(
            connection.user_id,
            connection.bank_code,
            expected_version=connection.version,
            operation="mark_reauth_required",
            actions=actions,
            now=now,
        )

    @tracer.capture_method(capture_response=False)
    def store_consent(self, connection: Connection, *, consent: ConsentSnapshot, now: datetime) -> Connection:
        """Record the consent the bank just accepted (it replaced the previous one there, so it does here).

        Conditional on ``connection.version`` and on the connection still being ACTIVE; bumps the version. Tokens,
        lease and refresh index are not touched (a refresh holding the lease retries its token write on the new
        version, see :class:`aisp.logic.refresh.engine.RefreshEngine`).

        Raises
        ------
        ConflictError
            The connection changed since it was read (refreshed, revoked, reconnected); nothing was written.
        """
        return self._update(
            connection.user_id,
            connection.bank_code,
            expected_version=connection.version,
            operation="store_consent",
            actions=[ConnectionRecord.consent.set(consent.model_dump_json())],
            now=now,
            extra_condition=ConnectionRecord.status == ConnectionStatus.ACTIVE.value,
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
                ConnectionRecord.status_reason.remove(),
                ConnectionRecord.journey_expires_at.remove(),
                ConnectionRecord.revoked_at.set(now),
                ConnectionRecord.purge_at.set(purge_at),
                ConnectionRecord.tokens.remove(),
                *_pending_removals(),
                ConnectionRecord.consent.remove(),
                ConnectionRecord.access_expires_at.remove(),
                ConnectionRecord.refresh_shard.remove(),
                ConnectionRecord.refresh_due_at.remove(),
                *_bookkeeping_removals(),
            ],
            now=now,
        )

    # ------------------------------------------------------------------------------------------------------------
    # The refresher: due keys, leases, failures, notices (none of these writes bumps the version)
    # ------------------------------------------------------------------------------------------------------------

    def due_keys(self, shard: int, *, due_before: int, page_size: int | None = None) -> Iterator[ConnectionKey]:
        """Keys of the shard's records due by ``due_before`` (epoch seconds), most urgent first.

        One ``Query`` of the keys-only ``RefreshDueIndex`` (``refresh_shard = shard AND refresh_due_at <=
        due_before``), paged lazily: the cost follows the number of due records, never the table size. The index is
        eventually consistent: a key may be stale, which the lease condition catches.
        """
        with translated("query_due_connections", shard=shard):
            for record in ConnectionRecord.refresh_due_index.query(
                shard, ConnectionRecord.refresh_due_at <= due_before, page_size=page_size
            ):
                yield ConnectionKey(record.user_id, record.bank_code)

    def count_due(self, shard: int, *, due_before: int) -> int:
        """How many of the shard's records are due by ``due_before`` (a ``Query`` with ``Select=COUNT``)."""
        with translated("count_due_connections", shard=shard):
            return int(ConnectionRecord.refresh_due_index.count(shard, ConnectionRecord.refresh_due_at <= due_before))

    @tracer.capture_method(capture_response=False)
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
        """Take the refresh lease of a connection and read it in the same conditional ``UpdateItem``.

        The write succeeds only when no lease is held (absent or expired) and, with ``due_before``, when the record
        is still due (the refresher: a record refreshed since the index query is no longer due), or, with
        ``expected_version``, when the record is ACTIVE at that version (an on-demand refresh). Its ``ALL_NEW``
        answer is the strongly consistent read of the record the refresh works from.

        Returns
        -------
        LeasedConnection | None
            The record and its decrypted tokens; ``None`` when the condition failed (leased elsewhere, refreshed
            already, changed, or gone).

        Raises
        ------
        KeyServiceError
            KMS could not unwrap the data key. The lease **is** held by ``owner`` then: release it. (A blob that
            does not authenticate is reported as ``tokens_unreadable`` instead, the lease held.)
        """
        if due_before is None and expected_version is None:
            raise InvalidRequestError("a lease needs due_before or expected_version")
        now_epoch = epoch(now)
        condition = _lease_free(now_epoch)
        if due_before is not None:
            condition &= ConnectionRecord.refresh_due_at <= due_before
        if expected_version is not None:
            condition &= ConnectionRecord.version == expected_version
            condition &= ConnectionRecord.status == ConnectionStatus.ACTIVE.value
        record = ConnectionRecord(key.user_id, key.bank_code)
        lease_until = now_epoch + lease_seconds
        try:
            with translated("acquire_lease", bank_code=key.bank_code):
                record.update(
                    actions=[ConnectionRecord.lease_until.set(lease_until), ConnectionRecord.lease_owner.set(owner)],
                    condition=condition,
                )
        except ConflictError:
            return None
        tokens: TokenPair | None = None
        pending_tokens: TokenPair | None = None
        unreadable = False
        try:
            if record.tokens is not None:
                tokens = self._open(record.tokens, key.user_id, key.bank_code)
            if record.pending_tokens is not None:
                pending_tokens = self._open(record.pending_tokens, key.user_id, key.bank_code)
        except TokenIntegrityError:
            logger.warning("stored token blob does not authenticate", bank_code=key.bank_code)
            unreadable = True
        notice = record.reauth_notice
        return LeasedConnection(
            connection=_to_connection(record),
            tokens=tokens,
            pending_tokens=pending_tokens,
            tokens_unreadable=unreadable,
            lease_owner=owner,
            lease_until=lease_until,
            refresh_due_at=None if record.refresh_due_at is None else int(record.refresh_due_at),
            refresh_failures=int(record.refresh_failures or 0),
            expiry_notices=frozenset(int(days) for days in record.expiry_notices or ()),
            reauth_notice=None if notice is None else ReauthNotice(notice),
        )

    @tracer.capture_method(capture_response=False)
    def release_lease(self, key: ConnectionKey, *, owner: str) -> bool:
        """Give the lease back (only if ``owner`` still holds it); ``False`` when it was not held."""
        try:
            with translated("release_lease", bank_code=key.bank_code):
                ConnectionRecord(key.user_id, key.bank_code).update(
                    actions=[ConnectionRecord.lease_until.remove(), ConnectionRecord.lease_owner.remove()],
                    condition=ConnectionRecord.lease_owner == owner,
                )
        except ConflictError:
            return False
        return True

    @tracer.capture_method(capture_response=False)
    def record_refresh_failure(
        self, key: ConnectionKey, *, owner: str, failures: int, error: str, next_due_at: int
    ) -> bool:
        """A refresh failed without a verdict on the refresh token: count it, push the next attempt, release the lease.

        Conditional on ``owner`` holding the lease and on the record still being ACTIVE (a record revoked or
        reconnected meanwhile must not re-enter the index). The tokens are not touched. ``False`` when the
        condition failed.
        """
        try:
            with translated("record_refresh_failure", bank_code=key.bank_code):
                ConnectionRecord(key.user_id, key.bank_code).update(
                    actions=[
                        ConnectionRecord.refresh_failures.set(failures),
                        ConnectionRecord.refresh_last_error.set(error),
                        ConnectionRecord.refresh_due_at.set(next_due_at),
                        ConnectionRecord.lease_until.remove(),
                        ConnectionRecord.lease_owner.remove(),
                    ],
                    condition=(ConnectionRecord.lease_owner == owner)
                    & (ConnectionRecord.status == ConnectionStatus.ACTIVE.value),
                )
        except ConflictError:
            return False
        return True

    @tracer.capture_method(capture_response=False)
    def claim_reauth_notice(self, key: ConnectionKey, *, now: datetime) -> Connection | None:
        """PENDING → SENT (before publishing), out of the refresh index; ``None`` if not pending any more."""
        record = ConnectionRecord(key.user_id, key.bank_code)
        try:
            with translated("claim_reauth_notice", bank_code=key.bank_code):
                record.update(
                    actions=[
                        ConnectionRecord.reauth_notice.set(ReauthNotice.SENT.value),
                        ConnectionRecord.reauth_notified_at.set(now),
                        ConnectionRecord.refresh_shard.remove(),
                        ConnectionRecord.refresh_due_at.remove(),
                        ConnectionRecord.lease_until.remove(),
                        ConnectionRecord.lease_owner.remove(),
                    ],
                    condition=(ConnectionRecord.status == ConnectionStatus.REAUTH_REQUIRED.value)
                    & (ConnectionRecord.reauth_notice == ReauthNotice.PENDING.value),
                )
        except ConflictError:
            return None
        return _to_connection(record)

    @tracer.capture_method(capture_response=False)
    def restore_reauth_notice(self, key: ConnectionKey, *, retry_due_at: int) -> bool:
        """The event could not be published: PENDING again, back in the index, due at ``retry_due_at``."""
        try:
            with translated("restore_reauth_notice", bank_code=key.bank_code):
                ConnectionRecord(key.user_id, key.bank_code).update(
                    actions=[
                        ConnectionRecord.reauth_notice.set(ReauthNotice.PENDING.value),
                        ConnectionRecord.reauth_notified_at.remove(),
                        ConnectionRecord.refresh_shard.set(refresh_shard(key.user_id, key.bank_code)),
                        ConnectionRecord.refresh_due_at.set(retry_due_at),
                    ],
                    condition=(ConnectionRecord.status == ConnectionStatus.REAUTH_REQUIRED.value)
                    & (ConnectionRecord.reauth_notice == ReauthNotice.SENT.value),
                )
        except ConflictError:
            return False
        return True

    @tracer.capture_method(capture_response=False)
    def claim_expiry_notices(self, key: ConnectionKey, thresholds: Collection[int]) -> bool:
        """Record ``thresholds`` as sent, before publishing, if none of them was and the record is ACTIVE.

        The condition makes concurrent runs safe: only one of them gets ``True`` and publishes.
        """
        if not thresholds:
            return False
        condition: Condition = ConnectionRecord.status == ConnectionStatus.ACTIVE.value
        for days in thresholds:
            condition &= ~ConnectionRecord.expiry_notices.contains(days)
        try:
            with translated("claim_expiry_notices", bank_code=key.bank_code):
                ConnectionRecord(key.user_id, key.bank_code).update(
                    actions=[ConnectionRecord.expiry_notices.add(set(thresholds))], condition=condition
                )
        except ConflictError:
            return False
        return True

    @tracer.capture_method(capture_response=False)
    def release_expiry_notices(self, key: ConnectionKey, thresholds: Collection[int]) -> None:
        """Forget ``thresholds`` (their event could not be published), so a later run sends it."""
        if thresholds:
            with translated("release_expiry_notices", bank_code=key.bank_code):
                ConnectionRecord(key.user_id, key.bank_code).update(
                    actions=[ConnectionRecord.expiry_notices.delete(set(thresholds))],
                    condition=ConnectionRecord.user_id.exists(),
                )

    # ------------------------------------------------------------------------------------------------------------
    # Internals
    # ------------------------------------------------------------------------------------------------------------

    def _token_actions(
        self,
        user_id: str,
        bank_code: str,
        tokens: TokenPair,
        access_expires_at: datetime,
        pending: PendingAuthorization | None = None,
    ) -> list[Action]:
        refresh_at = access_expires_at if tokens.refresh_token is not None else None
        return [
            ConnectionRecord.tokens.set(self._seal(tokens, user_id, bank_code)),
            ConnectionRecord.access_expires_at.set(access_expires_at),
            *_index_actions(user_id, bank_code, _dueepoch(refresh_at, pending.expires_at if pending else None)),
        ]

    @staticmethod
    def _version_condition(expected_version: int | None) -> tuple[Condition, int]:
        if expected_version is None:
            return ConnectionRecord.user_id.does_not_exist(), 1
        return ConnectionRecord.version == expected_version, expected_version + 1

    def _read(self, user_id: str, bank_code: str) -> Connection:
        record = self._get_record(user_id, bank_code)
        if record is None:
            raise ConnectionNotFoundError("connection not found", details={"bank_code": bank_code})
        return _to_connection(record)

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
        bump: bool = False,
    ) -> Connection:
        """A conditional update on ``expected_version`` (``None``: on the item not existing), which bumps it.

        With ``bump``, ``expected_version`` ``None`` means "whatever the version": ``extra_condition`` alone guards
        the write, and the version is still incremented (``ADD``), so every reader of the old one loses its race.
        """
        condition: Condition
        version_action: Action
        if bump and expected_version is None:
            condition = ConnectionRecord.user_id.exists()
            version_action = ConnectionRecord.version.add(1)
        else:
            condition, new_version = self._version_condition(expected_version)
            version_action = ConnectionRecord.version.set(new_version)
        if extra_condition is not None:
            condition &= extra_condition
        record = ConnectionRecord(user_id, bank_code)
        all_actions = [*actions, ConnectionRecord.updated_at.set(now), version_action]
        with translated(operation, bank_code=bank_code, expected_version=expected_version):
            record.update(actions=all_actions, condition=condition)
        return _to_connection(record)

    def _seal(self, tokens: TokenPair, user_id: str, bank_code: str) -> bytes:
        return seal_tokens(self._token_cipher(), tokens, user_id, bank_code)

    def _open(self, blob: bytes, user_id: str, bank_code: str) -> TokenPair:
        return open_tokens(self._token_cipher(), blob, user_id, bank_code)
