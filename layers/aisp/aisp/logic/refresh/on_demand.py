"""A usable access token for a request, refreshed on demand by the refresh engine (``docs/refresh.md``).

A request whose token is about to expire takes the connection's refresh lease and runs :class:`.engine.RefreshEngine`;
when someone else holds the lease (the refresher, another request) it waits a little for their tokens instead of
calling the bank a second time (BPCE revokes the previous access token on every refresh). A REAUTH_REQUIRED it causes
leaves its event for the refresher to publish (a request's function has no event-bus permission).
"""

from __future__ import annotations

import time
import uuid
from typing import Final

from aws_lambda_powertools.metrics import MetricUnit

from aisp.errors import (
    AispError,
    CompletionRequiredError,
    ConflictError,
    ConnectionFailedError,
    ConnectionPendingError,
    ReauthRequiredError,
    RefreshInProgressError,
)
from aisp.logic.refresh.engine import RefreshEngine, RefreshOutcome
from aisp.logic.services import ConnectionServices
from aisp.models.connection import Connection, ConnectionStatus, StatusReason, TokenPair
from aisp.models.refresh import ConnectionKey
from aisp.observability import logger, metrics, tracer

__all__ = ["DEFAULT_MARGIN_SECONDS", "not_usable", "refresh_for_request", "usable_tokens"]

# Refresh a little before the expiry so that a call started now does not reach the bank with a dead token.
DEFAULT_MARGIN_SECONDS: Final = 60
# An on-demand refresh holds the lease at most this long (bank timeout 3 s connect + 10 s read, then one write).
ON_DEMAND_LEASE_SECONDS = 30
# How long a request waits for another holder of the lease to store fresh tokens, and how often it looks.
LEASE_WAIT_SECONDS = 5.0
LEASE_POLL_SECONDS = 0.2


@tracer.capture_method(capture_response=False)
def usable_tokens(
    user_id: str,
    bank_code: str,
    *,
    services: ConnectionServices,
    margin_seconds: int = DEFAULT_MARGIN_SECONDS,
) -> tuple[Connection, TokenPair]:
    """The ACTIVE connection and an access token valid for at least ``margin_seconds`` (refreshed if needed).

    Raises
    ------
    ConnectionNotFoundError
        No connection to this bank.
    ReauthRequiredError
        The connection is REAUTH_REQUIRED (or just became so: past its ``reauth_due_at``), REVOKED, has no tokens,
        or the bank refused its refresh token.
    ConnectionNotUsableError
        The connection is PENDING, AUTHORIZED or FAILED (see :func:`not_usable`).
    RefreshInProgressError
        Another refresher holds the lease and did not store new tokens within a few seconds (a 409; retry).
    """
    connection, tokens = services.connections.get_with_tokens(user_id, bank_code)
    now = services.clock.now()
    if connection.status is ConnectionStatus.ACTIVE and connection.reauth_due(now):
        # The strong authentication's validity is over: the bank would refuse the refresh token anyway.
        _mark_reauth(_engine(services), connection, StatusReason.REAUTH_DUE)
        raise not_usable(connection.as_of(now))
    if connection.status is not ConnectionStatus.ACTIVE or tokens is None:
        raise not_usable(connection.as_of(now))
    if not connection.access_expired(now, margin_seconds=margin_seconds):
        return connection, tokens
    return refresh_for_request(connection, tokens, services=services)


def not_usable(connection: Connection) -> AispError:
    """Why ``connection`` (as it stands now) cannot serve bank data: the error its status maps to.

    PENDING, AUTHORIZED and FAILED each have their own (409 ``connection_pending``, ``completion_required``,
    ``connection_failed``); REAUTH_REQUIRED, REVOKED or an ACTIVE one without tokens are ``reauth_required``.
    """
    details = {"connection_status": connection.status.value}
    if connection.status_reason is not None:
        details["status_reason"] = connection.status_reason.value
    kinds: dict[ConnectionStatus, type[AispError]] = {
        ConnectionStatus.PENDING: ConnectionPendingError,
        ConnectionStatus.AUTHORIZED: CompletionRequiredError,
        ConnectionStatus.FAILED: ConnectionFailedError,
    }
    kind = kinds.get(connection.status)
    if kind is not None:
        return kind("connection is not active", details={"bank_code": connection.bank_code, **details})
    return ReauthRequiredError("connection is not active", bank_code=connection.bank_code, details=details)


@tracer.capture_method(capture_response=False)
def refresh_for_request(
    connection: Connection, tokens: TokenPair, *, services: ConnectionServices
) -> tuple[Connection, TokenPair]:
    """Refresh ``connection``'s access token under the refresh lease, or wait for whoever holds it.

    Raises
    ------
    ReauthRequiredError
        No refresh token, or the bank refused it (the connection is then REAUTH_REQUIRED).
    UpstreamError
        The bank failed otherwise; nothing was written, the stored refresh token is intact, the lease released.
    ConflictError
        Someone else changed the connection and it is no longer usable (revoked, reconnecting...).
    RefreshInProgressError
        Someone else holds the lease and did not finish within ``LEASE_WAIT_SECONDS``.
    """
    engine = _engine(services)
    if tokens.refresh_token is None:
        _mark_reauth(engine, connection, StatusReason.ACCESS_EXPIRED)
        raise ReauthRequiredError("connection has no refresh token", bank_code=connection.bank_code)
    key = ConnectionKey(connection.user_id, connection.bank_code)
    owner = f"on-demand:{uuid.uuid4().hex}"
    deadline = time.monotonic() + LEASE_WAIT_SECONDS
    current, current_tokens = connection, tokens
    while True:
        leased = services.connections.acquire_lease(
            key,
            owner=owner,
            now=services.clock.now(),
            lease_seconds=ON_DEMAND_LEASE_SECONDS,
            expected_version=current.version,
        )
        if leased is not None:
            return _refresh_leased(services, engine, leased.connection, leased.tokens or current_tokens, owner)
        # Leased elsewhere, or changed since we read it: use what the other writer stored once it is usable.
        current, stored_tokens = services.connections.get_with_tokens(key.user_id, key.bank_code)
        if current.status is ConnectionStatus.REAUTH_REQUIRED:
            raise ReauthRequiredError("connection needs a new strong authentication", bank_code=key.bank_code)
        if current.status is not ConnectionStatus.ACTIVE or stored_tokens is None:
            raise ConflictError("connection changed during refresh", details={"bank_code": key.bank_code})
        current_tokens = stored_tokens
        if current.version != connection.version and not current.access_expired(services.clock.now()):
            logger.info("connection refreshed by another caller; using the stored tokens")
            return current, current_tokens
        if time.monotonic() >= deadline:
            raise RefreshInProgressError("refresh in progress elsewhere", details={"bank_code": key.bank_code})
        time.sleep(LEASE_POLL_SECONDS)


def _engine(services: ConnectionServices) -> RefreshEngine:
    return RefreshEngine(services.connections, services.bank, services.clock)


def _refresh_leased(
    services: ConnectionServices, engine: RefreshEngine, connection: Connection, tokens: TokenPair, owner: str
) -> tuple[Connection, TokenPair]:
    result = engine.refresh(connection, tokens, owner=owner)
    if result.outcome is RefreshOutcome.REFRESHED and result.connection and result.tokens:
        metrics.add_metric(name="TokenRefreshed", unit=MetricUnit.Count, value=1)
        return result.connection, result.tokens
    if result.outcome is RefreshOutcome.REAUTH_REQUIRED:
        if result.connection is not None:
            metrics.add_metric(name="ConnectionReauthRequired", unit=MetricUnit.Count, value=1)
        raise result.error or ReauthRequiredError("connection has no refresh token", bank_code=connection.bank_code)
    if result.outcome is RefreshOutcome.FAILED and result.error is not None:
        engine.release(ConnectionKey(connection.user_id, connection.bank_code), owner)
        raise result.error
    logger.info("connection changed during refresh; using the stored tokens")
    now = services.clock.now()
    current, current_tokens = services.connections.get_with_tokens(connection.user_id, connection.bank_code)
    if current.status is not ConnectionStatus.ACTIVE or current_tokens is None or current.access_expired(now):
        raise ConflictError("connection changed during refresh", details={"bank_code": connection.bank_code})
    return current, current_tokens


def _mark_reauth(engine: RefreshEngine, connection: Connection, reason: StatusReason) -> None:
    if engine.mark_reauth(connection, reason=reason) is not None:
        metrics.add_metric(name="ConnectionReauthRequired", unit=MetricUnit.Count, value=1)
