"""Use cases of the ``/v1/connections`` resource: start the OAuth journey, list, delete.

One connection per (user, bank code). Starting a journey again for the same bank reuses the connection (same
``connection_id``): a new record is PENDING; an ACTIVE or REAUTH_REQUIRED one keeps its status (and its tokens) until
the callback stores the new ones; a REVOKED one goes back to PENDING.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import datetime
from typing import Final

from aws_lambda_powertools.metrics import MetricUnit

from aisp.banks import Bank
from aisp.errors import (
    ConfigurationError,
    ConflictError,
    ConnectionNotFoundError,
    InvalidRequestError,
    TokenCryptoError,
    UpstreamError,
)
from aisp.logic import services as _wiring
from aisp.logic.services import ConnectionServices, ConnectPolicy
from aisp.models.api import ConnectionSummary, CreateConnectionResponse
from aisp.models.connection import Connection, ConnectionStatus, TokenPair
from aisp.observability import logger, metrics, tracer
from aisp.pkce import code_challenge, new_code_verifier, seal_verifier
from aisp.return_urls import is_allowed

__all__ = [
    "callback_url_for",
    "delete_connection",
    "list_connections",
    "new_connection_id",
    "start_connection",
]

CALLBACK_PATH: Final = "/oauth/callback"
STATE_BYTES: Final = 32  # 256 bits from secrets (RFC 9700 asks for at least 128)
MAX_WRITE_ATTEMPTS: Final = 3
_DOMAIN: Final = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::[0-9]{1,5})?$")


def new_connection_id() -> str:
    """A new opaque connection id."""
    return f"cn_{uuid.uuid4().hex}"


def callback_url_for(policy: ConnectPolicy, api_domain: str | None) -> str:
    """The ``redirect_uri``: the configured one, else ``https://{api_domain}/oauth/callback``.

    ``api_domain`` is the HTTP API's ``requestContext.domainName`` (set by API Gateway, not by the client).

    Raises
    ------
    ConfigurationError
        No callback URL is configured and the request carries no usable domain.
    """
    if policy.callback_url:
        return policy.callback_url
    if not api_domain or not _DOMAIN.fullmatch(api_domain):
        raise ConfigurationError("no OAUTH_CALLBACK_URL and no API domain to derive it from")
    return f"https://{api_domain.lower()}{CALLBACK_PATH}"


@tracer.capture_method(capture_response=False)
def start_connection(
    *,
    user_id: str,
    bank_code: str,
    return_url: str,
    api_domain: str | None,
    services: ConnectionServices | None = None,
    policy: ConnectPolicy | None = None,
) -> CreateConnectionResponse:
    """Start (or restart) the user's connection to ``bank_code`` and return the bank's login link.

    Parameters
    ----------
    user_id
        The authenticated user (JWT ``sub``).
    bank_code
        Establishment code; must be in the registry.
    return_url
        Where the callback sends the browser back; must match the allowlist.
    api_domain
        The API's domain name, used when no callback URL is configured.

    Returns
    -------
    CreateConnectionResponse
        ``connection_id``, ``authorization_url`` (carries a fresh single-use ``state``) and its ``expires_at``.

    Raises
    ------
    UnknownBankError
        ``bank_code`` is not in the registry.
    InvalidRequestError
        ``return_url`` is not allowed.
    """
    services = services or _wiring.get_connection_services()
    policy = policy or _wiring.get_connect_policy()
    bank = services.registry.get(bank_code)
    if not is_allowed(return_url, policy.return_urls):
        # Never log the URL itself: its query may carry the app's own identifiers.
        raise InvalidRequestError("return_url is not an allowed redirect target", details={"field": "return_url"})
    redirect_uri = callback_url_for(policy, api_domain)
    now = services.clock.now()
    connection = _pending_connection(services, user_id, bank_code, now)
    logger.append_keys(connection_id=connection.connection_id, bank_code=bank_code)

    state = secrets.token_urlsafe(STATE_BYTES)
    expires_at = now + policy.state_ttl
    verifier = new_code_verifier() if bank.capabilities.pkce else None
    # Built before the state is stored: a configuration failure leaves no orphan state behind.
    authorization_url = services.bank.authorization_url(
        bank_code,
        redirect_uri=redirect_uri,
        state=state,
        code_challenge=None if verifier is None else code_challenge(verifier),
    )
    services.states.create(
        state=state,
        user_id=user_id,
        bank_code=bank_code,
        connection_id=connection.connection_id,
        return_url=return_url,
        redirect_uri=redirect_uri,
        now=now,
        expires_at=expires_at,
        sealed_code_verifier=None if verifier is None else seal_verifier(verifier, state=state),
    )
    metrics.add_metric(name="ConnectionStarted", unit=MetricUnit.Count, value=1)
    logger.info("connection journey started", status=connection.status.value)
    return CreateConnectionResponse(
        connection_id=connection.connection_id,
        bank_code=bank_code,
        authorization_url=authorization_url,
        expires_at=expires_at,
    )


def _pending_connection(services: ConnectionServices, user_id: str, bank_code: str, now: datetime) -> Connection:
    repository = services.connections
    existing = repository.find(user_id, bank_code)
    if existing is None:
        try:
            return repository.create_pending(
                user_id=user_id, bank_code=bank_code, connection_id=new_connection_id(), now=now
            )
        except ConflictError:
            existing = repository.find(user_id, bank_code)  # created concurrently: reuse it
            if existing is None:
                raise
    if existing.status is ConnectionStatus.REVOKED:
        try:
            return repository.reopen(existing, now=now)
        except ConflictError:
            existing = repository.find(user_id, bank_code) or existing
    return existing


@tracer.capture_method(capture_response=False)
def list_connections(user_id: str, *, services: ConnectionServices | None = None) -> list[ConnectionSummary]:
    """The user's connections (every status), without any token."""
    services = services or _wiring.get_connection_services()
    return [ConnectionSummary.from_connection(c) for c in services.connections.list_for_user(user_id)]


@tracer.capture_method(capture_response=False)
def delete_connection(user_id: str, bank_code: str, *, services: ConnectionServices | None = None) -> None:
    """Forget the user's connection to ``bank_code``.

    Revokes the tokens at the bank when the registry says it can (best effort: a bank failure is logged and the
    tokens are forgotten anyway), then marks the record REVOKED: tokens and consent removed, out of the refresh
    index, purged by TTL later. Deleting a REVOKED connection again is a no-op.

    Raises
    ------
    UnknownBankError
        ``bank_code`` is not in the registry.
    ConnectionNotFoundError
        The user has no connection to this bank (another user's connection is never visible).
    ConflictError
        The record kept changing under concurrent writes (retry).
    """
    services = services or _wiring.get_connection_services()
    bank = services.registry.get(bank_code)
    revoked_at_bank: set[str] = set()
    for _ in range(MAX_WRITE_ATTEMPTS):
        connection, tokens = _read_for_delete(services, user_id, bank_code)
        logger.append_keys(connection_id=connection.connection_id, bank_code=bank_code)
        if connection.status is ConnectionStatus.REVOKED:
            logger.info("connection already revoked")
            return
        if tokens is not None and bank.capabilities.token_revocation:
            _revoke_at_bank(services, bank, tokens, revoked_at_bank)
        now = services.clock.now()
        try:
            services.connections.revoke(connection, now=now, purge_at=now + services.revoked_retention)
        except ConflictError:
            logger.info("connection changed during delete; retrying")
            continue
        metrics.add_metric(name="ConnectionDeleted", unit=MetricUnit.Count, value=1)
        logger.info("connection deleted", previous_status=connection.status.value)
        return
    raise ConflictError("connection kept changing during delete", details={"bank_code": bank_code})


def _read_for_delete(services: ConnectionServices, user_id: str, bank_code: str) -> tuple[Connection, TokenPair | None]:
    try:
        return services.connections.get_with_tokens(user_id, bank_code)
    except TokenCryptoError as exc:
        # The tokens cannot be revoked at the bank, but they are forgotten all the same.
        logger.warning("stored tokens unreadable; deleting without bank revocation", error_type=type(exc).__name__)
        connection = services.connections.find(user_id, bank_code)
        if connection is None:
            raise ConnectionNotFoundError("connection not found", details={"bank_code": bank_code}) from None
        return connection, None


def _revoke_at_bank(services: ConnectionServices, bank: Bank, tokens: TokenPair, done: set[str]) -> None:
    # BPCE: revoking either token revokes both; the refresh token is the one that matters.
    if tokens.refresh_token is not None:
        token, hint = tokens.refresh_token.get_secret_value(), "refresh_token"
    else:
        token, hint = tokens.access_token.get_secret_value(), "access_token"
    fingerprint = hashlib.sha256(token.encode()).hexdigest()
    if fingerprint in done:
        return
    try:
        services.bank.revoke(bank.bank_code, token=token, token_type_hint=hint)
    except (UpstreamError, ConfigurationError) as exc:
        logger.warning(
            "bank revocation failed; forgetting the tokens anyway",
            error_type=type(exc).__name__,
            status=getattr(exc, "status", None),
        )
    else:
        logger.info("tokens revoked at the bank")
    done.add(fingerprint)
