"""A usable access token for a connection, refreshed on demand (the hook issue 5's account queries call).

The refresh follows the storage rules and takes the same short lease as the scheduled refresher (issue 6):

* the lease is a conditional write (no lease held, record ACTIVE at the version read); whoever holds it is the only
  one calling the bank's token endpoint for that connection;
* the new tokens are written conditional on the version read *and* on still holding the lease, and that write
  releases it; a failed refresh releases it and leaves the stored refresh token untouched;
* when someone else holds the lease (the refresher, another request), we wait a little for their tokens instead
  of calling the bank a second time (BPCE revokes the previous access token on every refresh);
* a refused refresh token makes the connection REAUTH_REQUIRED, with its ``ConnectionReauthRequired`` event left
  pending for the refresher to publish (this function's Lambda has no event-bus permission).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from aws_lambda_powertools.metrics import MetricUnit

from aisp import audit
from aisp.errors import (
    AispError,
    CompletionRequiredError,
    ConflictError,
    ConnectionFailedError,
    ConnectionPendingError,
    ReauthRequiredError,
    RefreshInProgressError,
)
from aisp.logic import services as _wiring
from aisp.logic.ports import ConnectionRepository
from aisp.logic.services import ConnectionServices
from aisp.models.connection import Connection, ConnectionStatus, StatusReason, TokenPair
from aisp.models.refresh import ConnectionKey
from aisp.observability import logger, metrics, tracer

if TYPE_CHECKING:  # the STET package (requests, signing) loads only when a bank is called
    from aisp.stet.schemas import TokenResponse

__all__ = ["access_expiry", "not_usable", "refresh_tokens", "store_after_refresh", "usable_tokens"]

DEFAULT_ACCESS_TOKEN_SECONDS: Final = 3600
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
    services: ConnectionServices | None = None,
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
    services = services or _wiring.get_connection_services()
    connection, tokens = services.connections.get_with_tokens(user_id, bank_code)
    now = services.clock.now()
    if connection.status is ConnectionStatus.ACTIVE and connection.reauth_due(now):
        # The strong authentication's validity is over: the bank would refuse the refresh token anyway.
        _mark_reauth(services, connection, reason=StatusReason.REAUTH_DUE)
        raise not_usable(connection.as_of(now))
    if connection.status is not ConnectionStatus.ACTIVE or tokens is None:
        raise not_usable(connection.as_of(now))
    if not connection.access_expired(now, margin_seconds=margin_seconds):
        return connection, tokens
    return refresh_tokens(connection, tokens, services=services)


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
def refresh_tokens(
    connection: Connection, tokens: TokenPair, *, services: ConnectionServices | None = None
) -> tuple[Connection, TokenPair]:
    """Refresh ``connection``'s access token at the bank under the refresh lease and store it.

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
    services = services or _wiring.get_connection_services()
    if tokens.refresh_token is None:
        _mark_reauth(services, connection, reason=StatusReason.ACCESS_EXPIRED)
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
            return _refresh_leased(services, leased.connection, leased.tokens or current_tokens, owner)
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


def access_expiry(issued: TokenResponse, now: datetime) -> datetime:
    """When an access token issued ``now`` expires (``expires_in``, or one hour when the bank does not say)."""
    expires_in = issued.expires_in if issued.expires_in is not None else DEFAULT_ACCESS_TOKEN_SECONDS
    return now + timedelta(seconds=max(0, expires_in))


def store_after_refresh(
    repository: ConnectionRepository,
    connection: Connection,
    *,
    tokens: TokenPair,
    access_expires_at: datetime,
    now: datetime,
    lease_owner: str,
) -> Connection | None:
    """Store freshly refreshed tokens while holding the lease; ``None`` when another writer won.

    The write is conditional on the version read and on the lease. If only the version moved (a consent write, which
    does not touch tokens) and the lease is still ours, the write is retried once on the new version: the bank has
    already revoked the previous access token, so the new one must not be dropped for an unrelated change.
    """
    try:
        return repository.store_refreshed_tokens(
            connection, tokens=tokens, access_expires_at=access_expires_at, now=now, lease_owner=lease_owner
        )
    except ConflictError:
        current = repository.find(connection.user_id, connection.bank_code)
    if current is None or current.status is not ConnectionStatus.ACTIVE or current.version == connection.version:
        repository.release_lease(ConnectionKey(connection.user_id, connection.bank_code), owner=lease_owner)
        return None
    try:
        return repository.store_refreshed_tokens(
            current, tokens=tokens, access_expires_at=access_expires_at, now=now, lease_owner=lease_owner
        )
    except ConflictError:
        repository.release_lease(ConnectionKey(connection.user_id, connection.bank_code), owner=lease_owner)
        return None


def _refresh_leased(
    services: ConnectionServices, connection: Connection, tokens: TokenPair, owner: str
) -> tuple[Connection, TokenPair]:
    key = ConnectionKey(connection.user_id, connection.bank_code)
    if tokens.refresh_token is None:
        _mark_reauth(services, connection, reason=StatusReason.ACCESS_EXPIRED)
        raise ReauthRequiredError("connection has no refresh token", bank_code=connection.bank_code)
    try:
        with audit.calling(
            "refresh",
            user_id=connection.user_id,
            bank_code=connection.bank_code,
            connection_id=connection.connection_id,
        ):
            issued = services.bank.refresh(connection.bank_code, refresh_token=tokens.refresh_token.get_secret_value())
    except ReauthRequiredError:
        _mark_reauth(services, connection)  # releases the lease in the same write
        raise
    except Exception:
        services.connections.release_lease(key, owner=owner)
        raise
    # BPCE answers the same refresh token, or none: keep the one we have.
    fresh = TokenPair(access_token=issued.access_token, refresh_token=issued.refresh_token or tokens.refresh_token)
    now = services.clock.now()
    try:
        stored = store_after_refresh(
            services.connections,
            connection,
            tokens=fresh,
            access_expires_at=access_expiry(issued, now),
            now=now,
            lease_owner=owner,
        )
    except Exception:
        # Not written (DynamoDB or KMS failed): the stored refresh token still works, so free the lease for the
        # next call rather than making every request wait for it to expire.
        _release_quietly(services, key, owner)
        raise
    if stored is None:
        logger.info("connection changed during refresh; using the stored tokens")
        current, current_tokens = services.connections.get_with_tokens(connection.user_id, connection.bank_code)
        if current.status is not ConnectionStatus.ACTIVE or current_tokens is None or current.access_expired(now):
            raise ConflictError("connection changed during refresh", details={"bank_code": connection.bank_code})
        return current, current_tokens
    metrics.add_metric(name="TokenRefreshed", unit=MetricUnit.Count, value=1)
    return stored, fresh


def _release_quietly(services: ConnectionServices, key: ConnectionKey, owner: str) -> None:
    try:
        services.connections.release_lease(key, owner=owner)
    except AispError:
        logger.warning("refresh lease not released; it expires on its own", bank_code=key.bank_code)


def _mark_reauth(
    services: ConnectionServices, connection: Connection, *, reason: StatusReason = StatusReason.ACCESS_REVOKED
) -> None:
    try:
        marked = services.connections.mark_reauth_required(
            connection, now=services.clock.now(), notify=True, reason=reason
        )
    except ConflictError:
        logger.info("connection changed before it could be marked reauth_required")
        return
    audit.lifecycle(marked, "reauth_required", outcome=reason.value)
    metrics.add_metric(name="ConnectionReauthRequired", unit=MetricUnit.Count, value=1)
    logger.info("connection needs a new strong authentication")
