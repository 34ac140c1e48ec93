"""Letting go of tokens the gateway will not use: revoked at the bank (best effort), then forgotten.

Used for a deleted connection, an authorization that is not completed in time, completed by another user or
replaced by a newer login, and tokens that could not be stored. Design: ``docs/connect.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aisp import audit
from aisp.errors import ConfigurationError, ConnectionNotFoundError, TokenCryptoError, UpstreamError
from aisp.observability import logger

if TYPE_CHECKING:
    from datetime import datetime

    from aisp.banks import Bank
    from aisp.logic.ports import BankGateway, ConnectionRepository
    from aisp.models.connection import Connection, StatusReason, TokenPair

__all__ = ["drop_authorization", "end_authorization", "revoke_quietly"]


def revoke_quietly(
    bank_gateway: BankGateway, bank: Bank, tokens: TokenPair, *, what: str, user_id: str, connection_id: str | None
) -> bool:
    """Revoke ``tokens`` (of ``user_id``'s connection) at ``bank`` if it can revoke; never raises.

    BPCE revokes both tokens when either is revoked: the refresh token is sent when there is one. ``what`` names the
    tokens in the log line (never their value). Returns whether the bank confirmed.
    """
    if not bank.capabilities.token_revocation:
        return False
    if tokens.refresh_token is not None:
        token, hint = tokens.refresh_token.get_secret_value(), "refresh_token"
    else:
        token, hint = tokens.access_token.get_secret_value(), "access_token"
    try:
        with audit.calling("revoke", user_id=user_id, bank_code=bank.bank_code, connection_id=connection_id):
            bank_gateway.revoke(bank.bank_code, token=token, token_type_hint=hint)
    except (UpstreamError, ConfigurationError) as exc:
        logger.warning(
            "bank revocation failed",
            tokens=what,
            error_type=type(exc).__name__,
            status=getattr(exc, "status", None),
        )
        return False
    logger.info("tokens revoked at the bank", tokens=what)
    return True


def end_authorization(
    repository: ConnectionRepository,
    bank_gateway: BankGateway,
    bank: Bank,
    connection: Connection,
    pending_tokens: TokenPair | None,
    *,
    reason: StatusReason,
    now: datetime,
) -> Connection | None:
    """Revoke, then forget, the tokens of ``connection``'s authorization awaiting completion, which will not be
    completed for ``reason``; the connection takes the authorization's uncompleted outcome.

    Revoked first: if forgetting fails, the next attempt revokes again (idempotent at the bank) rather than leaving
    live tokens nobody holds. ``None`` when the connection no longer holds that authorization.
    """
    if connection.pending is None:
        return None
    if pending_tokens is not None:
        revoke_quietly(
            bank_gateway,
            bank,
            pending_tokens,
            what="uncompleted_authorization",
            user_id=connection.user_id,
            connection_id=connection.connection_id,
        )
    ended = repository.discard_authorization(
        connection, authorization_id=connection.pending.authorization_id, reason=reason, now=now
    )
    if ended is not None:
        audit.lifecycle(ended, "authorization_ended", outcome=reason.value)
        logger.info("authorization ended uncompleted", reason=reason.value, status=ended.status.value)
    return ended


def drop_authorization(
    repository: ConnectionRepository,
    bank_gateway: BankGateway,
    bank: Bank,
    *,
    user_id: str,
    authorization_id: str,
    reason: StatusReason,
    now: datetime,
) -> Connection | None:
    """:func:`end_authorization` for the user's connection to ``bank``, if it still holds ``authorization_id``."""
    try:
        connection, _, pending = repository.get_with_all_tokens(user_id, bank.bank_code)
    except ConnectionNotFoundError:
        return None
    except TokenCryptoError as exc:
        logger.warning("pending tokens unreadable; forgetting them unrevoked", error_type=type(exc).__name__)
        found = repository.find(user_id, bank.bank_code)
        if found is None:
            return None
        connection, pending = found, None
    if connection.pending is None or connection.pending.authorization_id != authorization_id:
        return None
    return end_authorization(repository, bank_gateway, bank, connection, pending, reason=reason, now=now)
