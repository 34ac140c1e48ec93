"""A usable access token for a connection, refreshed on demand (the hook issue 5's account queries call).

The refresh follows the storage rules: the new tokens are written conditional on the version read; a lost race
means someone else (the refresher of issue 6, another request) wrote first, so their tokens are read back instead;
a refused refresh token makes the connection REAUTH_REQUIRED. The refresher will add a short lease around the bank
call (issue 6) so that two refreshers never call the bank for the same connection at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from aws_lambda_powertools.metrics import MetricUnit

from aisp.errors import ConflictError, ReauthRequiredError
from aisp.logic import services as _wiring
from aisp.logic.services import ConnectionServices
from aisp.models.connection import Connection, ConnectionStatus, TokenPair
from aisp.observability import logger, metrics, tracer

__all__ = ["refresh_tokens", "usable_tokens"]

DEFAULT_ACCESS_TOKEN_SECONDS: Final = 3600
# Refresh a little before the expiry so that a call started now does not reach the bank with a dead token.
DEFAULT_MARGIN_SECONDS: Final = 60


@tracer.capture_method(capture_response=False)
def usable_tokens(
    user_id: str,
    bank_code: str,
    *,
    services: ConnectionServices | None = None,
    margin_seconds: int = DEFAULT_MARGIN_SECONDS,
) -> tuple[Connection, TokenPair]:
    """The ACTIVE connection and an access token valid for at least ``margin_seconds`` (refreshed if needed).

    Raises
    ------
    ConnectionNotFoundError
        No connection to this bank.
    ReauthRequiredError
        The connection is not ACTIVE, has no tokens, or the bank refused its refresh token.
    """
    services = services or _wiring.get_connection_services()
    connection, tokens = services.connections.get_with_tokens(user_id, bank_code)
    if connection.status is not ConnectionStatus.ACTIVE or tokens is None:
        raise ReauthRequiredError(
            "connection is not active", bank_code=bank_code, details={"connection_status": connection.status.value}
        )
    if not connection.access_expired(services.clock.now(), margin_seconds=margin_seconds):
        return connection, tokens
    return refresh_tokens(connection, tokens, services=services)


@tracer.capture_method(capture_response=False)
def refresh_tokens(
    connection: Connection, tokens: TokenPair, *, services: ConnectionServices | None = None
) -> tuple[Connection, TokenPair]:
    """Refresh ``connection``'s access token at the bank and store it (conditional on ``connection.version``).

    Raises
    ------
    ReauthRequiredError
        No refresh token, or the bank refused it (the connection is then REAUTH_REQUIRED).
    UpstreamError
        The bank failed otherwise; nothing was written, the stored refresh token is intact.
    ConflictError
        Someone else changed the connection and it is no longer usable (revoked, reconnecting...).
    """
    services = services or _wiring.get_connection_services()
    if tokens.refresh_token is None:
        _mark_reauth(services, connection)
        raise ReauthRequiredError("connection has no refresh token", bank_code=connection.bank_code)
    try:
        issued = services.bank.refresh(connection.bank_code, refresh_token=tokens.refresh_token.get_secret_value())
    except ReauthRequiredError:
        _mark_reauth(services, connection)
        raise
    # BPCE answers the same refresh token, or none: keep the one we have.
    fresh = TokenPair(access_token=issued.access_token, refresh_token=issued.refresh_token or tokens.refresh_token)
    now = services.clock.now()
    expires_in = issued.expires_in if issued.expires_in is not None else DEFAULT_ACCESS_TOKEN_SECONDS
    try:
        stored = services.connections.store_refreshed_tokens(
            connection, tokens=fresh, access_expires_at=now + timedelta(seconds=max(0, expires_in)), now=now
        )
    except ConflictError:
        logger.info("connection changed during refresh; using the stored tokens")
        current, current_tokens = services.connections.get_with_tokens(connection.user_id, connection.bank_code)
        if current.status is not ConnectionStatus.ACTIVE or current_tokens is None or current.access_expired(now):
            raise
        return current, current_tokens
    metrics.add_metric(name="TokenRefreshed", unit=MetricUnit.Count, value=1)
    return stored, fresh


def _mark_reauth(services: ConnectionServices, connection: Connection) -> None:
    try:
        services.connections.mark_reauth_required(connection, now=services.clock.now())
    except ConflictError:
        logger.info("connection changed before it could be marked reauth_required")
        return
    metrics.add_metric(name="ConnectionReauthRequired", unit=MetricUnit.Count, value=1)
    logger.info("connection needs a new strong authentication")
