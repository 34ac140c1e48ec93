"""Pending OAuth ``state`` values: stored hashed, consumed exactly once with a conditional write.

Only the SHA-256 of a state is stored (the state itself is a 256-bit random value, so no salt is needed): a reader
of the table cannot forge a callback. A consumed record is kept until its TTL so that a replay is recognised as
one (and the browser sent back with ``invalid_state``) instead of looking forged. Design: ``docs/connect.md``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from aisp.dal.errors import translated
from aisp.dal.tables import OAuthStateRecord
from aisp.errors import ConflictError, OAuthStateRejectedError
from aisp.models.connection import OAuthState
from aisp.observability import tracer

__all__ = ["DynamoOAuthStateRepository", "hash_state"]


def hash_state(state: str) -> str:
    """The table key of a state value."""
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def _to_state(record: OAuthStateRecord) -> OAuthState:
    return OAuthState(
        state_hash=record.state_hash,
        user_id=record.user_id,
        bank_code=record.bank_code,
        connection_id=record.connection_id,
        return_url=record.return_url,
        redirect_uri=record.redirect_uri,
        created_at=record.created_at,
        expires_at=record.expires_at,
        consumed_at=record.consumed_at,
        sealed_code_verifier=record.code_verifier,
    )


class DynamoOAuthStateRepository:
    """OAuth states in ``OAuthStatesTable``."""

    @tracer.capture_method(capture_response=False)
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
        """Store a new pending state (never overwrites one: a collision of 256-bit values is a bug)."""
        record = OAuthStateRecord(
            hash_state(state),
            user_id=user_id,
            bank_code=bank_code,
            connection_id=connection_id,
            return_url=return_url,
            redirect_uri=redirect_uri,
            created_at=now,
            expires_at=expires_at,
            code_verifier=sealed_code_verifier,
        )
        with translated("create_oauth_state", bank_code=bank_code, connection_id=connection_id):
            record.save(condition=OAuthStateRecord.state_hash.does_not_exist())
        return _to_state(record)

    @tracer.capture_method(capture_response=False)
    def consume(self, state: str, *, now: datetime) -> OAuthState:
        """Mark a state used, once: the record must exist, be unused and unexpired (TTL deletion lags, so expiry is
        checked here too).

        Raises
        ------
        OAuthStateRejectedError
            ``reason`` = ``unknown`` (no such state: forged, or purged), ``used`` (replay, or the losing side of two
            concurrent callbacks) or ``expired``; nothing was written.
        """
        record = OAuthStateRecord(hash_state(state))
        condition = (
            OAuthStateRecord.state_hash.exists()
            & OAuthStateRecord.consumed_at.does_not_exist()
            & (OAuthStateRecord.expires_at > now)
        )
        try:
            with translated("consume_oauth_state"):
                record.update(actions=[OAuthStateRecord.consumed_at.set(now)], condition=condition)
        except ConflictError:
            raise self._rejection(state, now) from None
        return _to_state(record)

    def _rejection(self, state: str, now: datetime) -> OAuthStateRejectedError:
        with translated("read_oauth_state"):
            try:
                record = OAuthStateRecord.get(hash_state(state), consistent_read=True)
            except OAuthStateRecord.DoesNotExist:
                return OAuthStateRejectedError("unknown")
        found = _to_state(record)
        reason = "used" if found.consumed_at is not None else ("expired" if found.expires_at <= now else "used")
        return OAuthStateRejectedError(
            reason, return_url=found.return_url, bank_code=found.bank_code, connection_id=found.connection_id
        )
