"""Use cases of the ``/v1/connections`` resource: start the OAuth journey, complete it, read, list, delete.

One connection per (user, bank code). Starting a journey again for the same bank reuses the connection (same
``connection_id``): a new record is PENDING; an ACTIVE, REAUTH_REQUIRED or AUTHORIZED one keeps its status (and its
tokens) until a login is completed; a REVOKED or FAILED one goes back to PENDING. Only the user who started a login
can complete it, with the one-time value the callback gave the app. States and design: ``docs/connect.md``.
"""

from __future__ import annotations

import hmac
import re
import secrets
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Final

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict

from aisp import audit
from aisp.errors import (
    AispError,
    ConfigurationError,
    ConflictError,
    ConnectionNotFoundError,
    InvalidCompletionError,
    InvalidRequestError,
    TokenCryptoError,
)
from aisp.idempotency import Idempotent
from aisp.logic.oauth_callback import completion_hash
from aisp.logic.ports import MAX_WRITE_ATTEMPTS
from aisp.logic.revocation import drop_authorization, revoke_quietly
from aisp.logic.services import ConnectionServices, ConnectPolicy
from aisp.logic.sync.slots import next_slot
from aisp.models.api import ConnectionSummary, CreateConnectionRequest, CreateConnectionResponse
from aisp.models.connection import Completion, CompletionOutcome, Connection, ConnectionStatus, StatusReason, TokenPair
from aisp.observability import logger, metrics, tracer
from aisp.pkce import code_challenge, new_code_verifier, seal_verifier
from aisp.return_urls import is_allowed

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

__all__ = [
    "callback_url_for",
    "complete_connection",
    "delete_connection",
    "get_connection",
    "list_connections",
    "new_connection_id",
    "start_connection",
    "start_connection_once",
]

CALLBACK_PATH: Final = "/oauth/callback"
STATE_BYTES: Final = 32  # 256 bits from secrets (RFC 9700 asks for at least 128)
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
    services: ConnectionServices,
    policy: ConnectPolicy,
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
    bank = services.registry.get(bank_code)
    if not is_allowed(return_url, policy.return_urls):
        # Never log the URL itself: its query may carry the app's own identifiers.
        raise InvalidRequestError("return_url is not an allowed redirect target", details={"field": "return_url"})
    redirect_uri = callback_url_for(policy, api_domain)
    now = services.clock.now()
    expires_at = now + policy.state_ttl
    connection = _journey_connection(services, user_id, bank_code, now, expires_at)
    logger.append_keys(connection_id=connection.connection_id, bank_code=bank_code)

    state = secrets.token_urlsafe(STATE_BYTES)
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
    audit.lifecycle(connection, "started")
    return CreateConnectionResponse(
        connection_id=connection.connection_id,
        bank_code=bank_code,
        authorization_url=authorization_url,
        expires_at=expires_at,
    )


def _journey_connection(
    services: ConnectionServices, user_id: str, bank_code: str, now: datetime, journey_expires_at: datetime
) -> Connection:
    """The connection a new login journey belongs to: created PENDING, reopened (REVOKED, FAILED), or as it is."""
    repository = services.connections
    existing = repository.find(user_id, bank_code)
    if existing is None:
        try:
            return repository.create_pending(
                user_id=user_id,
                bank_code=bank_code,
                connection_id=new_connection_id(),
                now=now,
                journey_expires_at=journey_expires_at,
            )
        except ConflictError:
            existing = repository.find(user_id, bank_code)  # created concurrently: reuse it
            if existing is None:
                raise
    if existing.status in {ConnectionStatus.REVOKED, ConnectionStatus.FAILED}:
        try:
            return repository.reopen(existing, now=now, journey_expires_at=journey_expires_at)
        except ConflictError:
            existing = repository.find(user_id, bank_code) or existing
    if existing.status is ConnectionStatus.PENDING:
        repository.note_journey(existing, journey_expires_at=journey_expires_at)
    return existing


@tracer.capture_method(capture_response=False)
def list_connections(user_id: str, *, services: ConnectionServices) -> list[ConnectionSummary]:
    """The user's connections (every status, as they stand now), without any token."""
    now = services.clock.now()
    return [ConnectionSummary.from_connection(c.as_of(now)) for c in services.connections.list_for_user(user_id)]


@tracer.capture_method(capture_response=False)
def get_connection(user_id: str, bank_code: str, *, services: ConnectionServices) -> ConnectionSummary:
    """The user's connection to ``bank_code`` as it stands now, without any token.

    Raises
    ------
    UnknownBankError
        ``bank_code`` is not in the registry.
    ConnectionNotFoundError
        The user has no connection to this bank (another user's connection is never visible).
    """
    services.registry.get(bank_code)
    connection = services.connections.find(user_id, bank_code)
    if connection is None:
        raise ConnectionNotFoundError("connection not found", details={"bank_code": bank_code})
    return ConnectionSummary.from_connection(connection.as_of(services.clock.now()))


@tracer.capture_method(capture_response=False)
def complete_connection(
    *, user_id: str, bank_code: str, completion: str, services: ConnectionServices
) -> ConnectionSummary:
    """Activate the connection the bank authorized, by the user who started its login, with its one-time value.

    The completion value and the activation are written in one transaction: the value is used up exactly when the
    connection becomes ACTIVE. Another user's attempt uses it up too, and the authorization's tokens are revoked at
    the bank and forgotten (the person who logged in at the bank is not the user who asked for the link); so is an
    attempt after the deadline. A reconnection's previous tokens served until now, and are revoked once replaced.

    Raises
    ------
    InvalidCompletionError
        The value is unknown, used, expired, another user's, or for another bank (one answer for all).
    UnknownBankError
        ``bank_code`` is not in the registry.
    """
    bank = services.registry.get(bank_code)
    now = services.clock.now()
    key = completion_hash(completion)
    found = _checked_completion(services, key, user_id=user_id, bank_code=bank_code, now=now)
    for _ in range(MAX_WRITE_ATTEMPTS):
        connection, serving = _read_serving(services, user_id, bank_code)
        if connection is None or connection.pending is None:
            raise InvalidCompletionError("no_authorization")
        if connection.pending.authorization_id != found.authorization_id:
            raise InvalidCompletionError("replaced")
        try:
            activated = services.connections.complete_authorization(connection, completion_hash=key, now=now)
        except ConflictError:
            again = services.connections.find_completion(key)
            if again is None or again.consumed_at is not None:
                raise InvalidCompletionError("used") from None
            logger.info("connection changed while completing; retrying")
            continue
        if serving is not None:
            revoke_quietly(
                services.bank,
                bank,
                serving,
                what="replaced_by_completion",
                user_id=user_id,
                connection_id=activated.connection_id,
            )
        metrics.add_metric(name="ConnectionActivated", unit=MetricUnit.Count, value=1)
        logger.info("connection activated", reauth_due_at=activated.reauth_due_at)
        audit.lifecycle(activated, "activated")
        _schedule_sync(services, activated, now)
        return ConnectionSummary.from_connection(activated)
    raise ConflictError("connection kept changing while completing", details={"bank_code": bank_code})


def _schedule_sync(services: ConnectionServices, activated: Connection, now: datetime) -> None:
    """Put a connection made ACTIVE in the sync's due index at its first slot (``docs/sync.md``, The schedule).

    Best effort: the connection is ACTIVE whatever happens here, and the sync's daily catch-up schedules an ACTIVE
    connection the index misses.
    """
    if services.transactions is None:
        return
    try:
        services.transactions.schedule_sync(
            activated.connection_id,
            user_id=activated.user_id,
            bank_code=activated.bank_code,
            at=next_slot(activated.connection_id, now, services.sync_runs_per_day),
        )
    except AispError as exc:
        logger.warning("sync not scheduled; the daily catch-up will", error_type=type(exc).__name__)


def _checked_completion(
    services: ConnectionServices, key: str, *, user_id: str, bank_code: str, now: datetime
) -> Completion:
    """The completion stored under ``key`` if it may activate ``user_id``'s connection now, else
    :class:`InvalidCompletionError`; another user's attempt, or a late one, also ends its authorization."""
    found = services.connections.find_completion(key)
    if found is None or not hmac.compare_digest(found.completion_hash, key):
        raise InvalidCompletionError("unknown")
    logger.append_keys(connection_id=found.connection_id, bank_code=found.bank_code)
    if found.user_id != user_id:
        _refuse(services, found, now, outcome=CompletionOutcome.REJECTED)
        metrics.add_metric(name="CompletionRejected", unit=MetricUnit.Count, value=1)
        logger.warning("completion attempted by another user than the one who started the login")
        audit.completion_rejected(found)
        raise InvalidCompletionError("other_user")
    if found.bank_code != bank_code:
        raise InvalidCompletionError("other_bank")
    if found.consumed_at is not None:
        raise InvalidCompletionError("used")
    if found.valid_until <= now:
        _refuse(services, found, now, outcome=CompletionOutcome.EXPIRED)
        raise InvalidCompletionError("expired")
    return found


def _read_serving(
    services: ConnectionServices, user_id: str, bank_code: str
) -> tuple[Connection | None, TokenPair | None]:
    """The connection and its serving tokens (``None`` when it has none or they do not decrypt)."""
    try:
        return services.connections.get_with_tokens(user_id, bank_code)
    except ConnectionNotFoundError:
        return None, None
    except TokenCryptoError as exc:
        logger.warning("serving tokens unreadable; completing without revoking them", error_type=type(exc).__name__)
        return services.connections.find(user_id, bank_code), None


def _refuse(services: ConnectionServices, found: Completion, now: datetime, *, outcome: CompletionOutcome) -> None:
    """Use up a completion value that activates nothing, and revoke and forget its authorization's tokens."""
    if not services.connections.consume_completion(found.completion_hash, outcome=outcome, now=now):
        return  # used meanwhile: whoever used it did what it needed
    reason = (
        StatusReason.COMPLETION_REJECTED if outcome is CompletionOutcome.REJECTED else StatusReason.COMPLETION_EXPIRED
    )
    drop_authorization(
        services.connections,
        services.bank,
        services.registry.get(found.bank_code),
        user_id=found.user_id,
        authorization_id=found.authorization_id,
        reason=reason,
        now=now,
    )


@tracer.capture_method(capture_response=False)
def delete_connection(user_id: str, bank_code: str, *, services: ConnectionServices) -> None:
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
    bank = services.registry.get(bank_code)
    revoked_at_bank: set[str] = set()
    for _ in range(MAX_WRITE_ATTEMPTS):
        connection, held = _read_for_delete(services, user_id, bank_code)
        logger.append_keys(connection_id=connection.connection_id, bank_code=bank_code)
        # First the synced data (a failure leaves everything as it was, for a retry), then the connection.
        if services.transactions is not None:
            services.transactions.purge(connection.connection_id)
        if connection.status is ConnectionStatus.REVOKED:
            logger.info("connection already revoked")
            return
        for tokens in held:
            # Serving tokens, and those of a login awaiting completion: each pair once, even across retries.
            fingerprint = tokens.fingerprint()
            if fingerprint not in revoked_at_bank:
                revoke_quietly(
                    services.bank,
                    bank,
                    tokens,
                    what="deleted_connection",
                    user_id=user_id,
                    connection_id=connection.connection_id,
                )
                revoked_at_bank.add(fingerprint)
        now = services.clock.now()
        try:
            deleted = services.connections.revoke(connection, now=now, purge_at=now + services.revoked_retention)
        except ConflictError:
            logger.info("connection changed during delete; retrying")
            continue
        audit.lifecycle(deleted, "deleted")
        metrics.add_metric(name="ConnectionDeleted", unit=MetricUnit.Count, value=1)
        logger.info("connection deleted", previous_status=connection.status.value)
        return
    raise ConflictError("connection kept changing during delete", details={"bank_code": bank_code})


def _read_for_delete(services: ConnectionServices, user_id: str, bank_code: str) -> tuple[Connection, list[TokenPair]]:
    """The connection and every token pair it holds (serving, and awaiting completion)."""
    try:
        connection, tokens, pending = services.connections.get_with_all_tokens(user_id, bank_code)
    except TokenCryptoError as exc:
        # The tokens cannot be revoked at the bank, but they are forgotten all the same.
        logger.warning("stored tokens unreadable; deleting without bank revocation", error_type=type(exc).__name__)
        found = services.connections.find(user_id, bank_code)
        if found is None:
            raise ConnectionNotFoundError("connection not found", details={"bank_code": bank_code}) from None
        return found, []
    return connection, [held for held in (tokens, pending) if held is not None]


class ConnectionCall(BaseModel):
    """What a keyed ``POST /v1/connections`` is recorded under (user, key) and bound to (the request)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    user_id: str
    idempotency_key: str
    request: CreateConnectionRequest


def start_connection_once(
    *,
    user_id: str,
    request: CreateConnectionRequest,
    api_domain: str | None,
    idempotency_key: str | None,
    lambda_context: LambdaContext | None = None,
    services: ConnectionServices,
    policy: ConnectPolicy,
) -> CreateConnectionResponse:
    """:func:`start_connection` behind the client's ``Idempotency-Key`` (:mod:`aisp.idempotency`).

    The same key and body give the first answer again (the same login link, sealed at rest); the same key with
    another body is ``IdempotencyKeyReusedError``; without a key, every call starts a new login journey.
    """
    if idempotency_key is None:
        return start_connection(
            user_id=user_id,
            bank_code=request.bank_code,
            return_url=request.return_url,
            api_domain=api_domain,
            services=services,
            policy=policy,
        )
    if services.idempotency is None:
        raise ConfigurationError("no idempotency store for keyed connection starts")
    call = ConnectionCall(user_id=user_id, idempotency_key=idempotency_key, request=request)
    return _idempotent_start(
        call,
        store=services.idempotency(),
        lambda_context=lambda_context,
        details={"bank_code": request.bank_code},
        api_domain=api_domain,
        services=services,
        policy=policy,
    )


def _start_once(
    *, call: ConnectionCall, api_domain: str | None, services: ConnectionServices, policy: ConnectPolicy
) -> CreateConnectionResponse:
    """The idempotent unit: ``call`` is hashed (key and body), the rest is not."""
    return start_connection(
        user_id=call.user_id,
        bank_code=call.request.bank_code,
        return_url=call.request.return_url,
        api_domain=api_domain,
        services=services,
        policy=policy,
    )


# Sealed: the answer's authorization_url carries the login's OAuth state.
_idempotent_start: Final[Idempotent[ConnectionCall, CreateConnectionResponse]] = Idempotent(
    _start_once, event_key="[user_id, idempotency_key]", payload="request", answer=CreateConnectionResponse, sealed=True
)
