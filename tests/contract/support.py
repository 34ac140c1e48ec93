"""What the contract tests share: a moment, token pairs, and records in the states the tests start from."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr

from aisp.models.connection import Connection, ConnectionStatus, PendingAuthorization, TokenPair
from aisp.models.refresh import ConnectionKey
from tests.fakes import START

NOW = START
PAIR = TokenPair(access_token=SecretStr("access-aaaa-1111"), refresh_token=SecretStr("refresh-rrrr-2222"))
NEW_PAIR = TokenPair(access_token=SecretStr("access-new-3333"), refresh_token=SecretStr("refresh-new-4444"))
MARC = ConnectionKey("user-marc", "13807")
STATE = "Zm9yZ2V0LW1lLW5vdC0xMjgtYml0cy1vZi1yYW5kb21uZXNz"


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def active(
    repo: Any,
    key: ConnectionKey = MARC,
    *,
    tokens: TokenPair = PAIR,
    expires_in: timedelta = timedelta(hours=1),
    reauth_in: timedelta = timedelta(days=90),
    via_pending: bool = False,
) -> Connection:
    """An ACTIVE connection, as after a login (first created PENDING with ``via_pending``)."""
    expected_version = None
    if via_pending:
        pending = repo.create_pending(
            user_id=key.user_id, bank_code=key.bank_code, connection_id=f"cn_{key.user_id}", now=NOW
        )
        expected_version = pending.version
    return repo.activate(
        user_id=key.user_id,
        bank_code=key.bank_code,
        connection_id=f"cn_{key.user_id}",
        expected_version=expected_version,
        tokens=tokens,
        access_expires_at=NOW + expires_in,
        reauth_due_at=NOW + reauth_in,
        now=NOW,
    )


def authorization(
    authorization_id: str = "az_1",
    *,
    at: datetime = NOW,
    completion_ttl: timedelta = timedelta(minutes=5),
    refresh: bool = True,
    resume: ConnectionStatus = ConnectionStatus.PENDING,
) -> PendingAuthorization:
    """The authorization a login at ``at`` leaves awaiting completion."""
    return PendingAuthorization(
        authorization_id=authorization_id,
        authorized_at=at,
        expires_at=at + completion_ttl,
        access_expires_at=at + timedelta(hours=1),
        reauth_due_at=at + timedelta(days=90),
        has_refresh_token=refresh,
        resume_status=resume,
    )


def authorize(
    repo: Any,
    key: ConnectionKey = MARC,
    *,
    expected_version: int | None = None,
    pending: PendingAuthorization | None = None,
    completion_hash: str = "completion-hash-1",
    tokens: TokenPair = NEW_PAIR,
    now: datetime = NOW,
) -> Connection:
    """A login's tokens sealed awaiting completion (``expected_version``: the record as read, ``None``: none)."""
    return repo.authorize(
        user_id=key.user_id,
        bank_code=key.bank_code,
        connection_id=f"cn_{key.user_id}",
        expected_version=expected_version,
        tokens=tokens,
        pending=pending or authorization(at=now),
        completion_hash=completion_hash,
        now=now,
    )


def create_state(states: Any, state: str = STATE, now: datetime = NOW, **extra: Any) -> Any:
    """Marc's pending login to 13807, ten minutes to come back."""
    return states.create(
        state=state,
        user_id="user-marc",
        bank_code="13807",
        connection_id="cn_1",
        return_url="https://app.example.com/connections/done",
        redirect_uri="https://api.example.com/oauth/callback",
        now=now,
        expires_at=now + timedelta(minutes=10),
        **extra,
    )


def raw_text(item: dict[str, Any]) -> str:
    """Every attribute value of a raw item, decoded, in one string (bytes decoded as latin-1 and utf-8)."""
    parts = []
    for value in item.values():
        for raw in value.values():
            if isinstance(raw, bytes):
                parts += [raw.decode("latin-1"), raw.decode("utf-8", "replace")]
            else:
                parts.append(str(raw))
    return "\n".join(parts)
