"""The bank's browser redirect: consume the ``state`` once, exchange the code (with PKCE's verifier), seal the new
tokens on the connection as an authorization awaiting completion, and hand the app a one-time completion value.

Every outcome is a redirect to the ``return_url`` stored with the state, carrying only our own stable words:
``status=authorized&bank_code=..&completion=..`` or ``status=error&error=<code>``. The authorization code, the
state and the bank's ``error_description`` are never echoed or logged. A state that matches nothing has no
``return_url``: the caller shows a small "invalid link" page instead (``redirect_url`` is ``None``). The connection
becomes usable only when the user who started the login completes it (:func:`aisp.logic.connections.
complete_connection`); design and states: ``docs/connect.md``.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from aisp import audit
from aisp.errors import (
    AispError,
    BankRateLimitedError,
    BankUnavailableError,
    ConflictError,
    ConnectionNotFoundError,
    OAuthStateRejectedError,
    TokenCryptoError,
    UpstreamError,
)
from aisp.logic.ports import MAX_WRITE_ATTEMPTS
from aisp.logic.refresh.engine import access_expiry
from aisp.logic.revocation import revoke_quietly
from aisp.logic.services import ConnectionServices
from aisp.models.connection import (
    RESUMABLE,
    Connection,
    ConnectionStatus,
    OAuthState,
    PendingAuthorization,
    StatusReason,
    TokenPair,
)
from aisp.observability import logger, metrics, tracer
from aisp.pkce import open_verifier
from aisp.return_urls import append_query

if TYPE_CHECKING:
    from aisp.models.bank import IssuedTokens

__all__ = ["COMPLETION_BYTES", "CallbackError", "CallbackResult", "completion_hash", "handle_callback"]

COMPLETION_BYTES: Final = 32  # 256 bits from secrets, like the state


class CallbackError(StrEnum):
    """The ``error`` values the fintech's app receives (the issue's contract)."""

    ACCESS_DENIED = "access_denied"
    INVALID_STATE = "invalid_state"
    STATE_EXPIRED = "state_expired"
    BANK_UNAVAILABLE = "bank_unavailable"
    TOKEN_EXCHANGE_FAILED = "token_exchange_failed"  # noqa: S105 - an error code, not a secret


# RFC 6749 §4.1.2.1 errors the bank may redirect with. Anything else (or an unknown value) → token_exchange_failed.
_BANK_ERRORS: Final = {
    "access_denied": CallbackError.ACCESS_DENIED,
    "server_error": CallbackError.BANK_UNAVAILABLE,
    "temporarily_unavailable": CallbackError.BANK_UNAVAILABLE,
}
# What a first login's failure leaves on its connection (FAILED with this reason).
_FAILED_REASONS: Final = {
    CallbackError.ACCESS_DENIED: StatusReason.ACCESS_DENIED,
    CallbackError.STATE_EXPIRED: StatusReason.LOGIN_EXPIRED,
    CallbackError.BANK_UNAVAILABLE: StatusReason.BANK_UNAVAILABLE,
    CallbackError.TOKEN_EXCHANGE_FAILED: StatusReason.TOKEN_EXCHANGE_FAILED,
}


def completion_hash(completion: str) -> str:
    """The table key of a completion value (only its SHA-256 is stored, like the state's)."""
    return hashlib.sha256(completion.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """Where to send the browser. ``redirect_url`` is ``None`` when the state matched nothing (no return_url)."""

    outcome: str  # "authorized" or a CallbackError value
    redirect_url: str | None
    connection_id: str | None = None


@tracer.capture_method(capture_response=False)
def handle_callback(
    *,
    state: str | None,
    code: str | None,
    error: str | None,
    services: ConnectionServices,
) -> CallbackResult:
    """End a login journey at the bank.

    Parameters
    ----------
    state, code, error
        The callback's query parameters (``error`` when the user refused or the bank failed).

    Returns
    -------
    CallbackResult
        The redirect to the stored ``return_url`` with the outcome (a completion value on success), or no redirect
        for an unknown state.

    Notes
    -----
    The state is consumed with a conditional write before anything else, so a replay or the second of two
    concurrent callbacks changes nothing and never reaches the bank: exactly one code exchange per state.
    """
    if not state:
        return _failed(None, CallbackError.INVALID_STATE, reason="missing")
    return _journey_end(services, state, code, error)


def _journey_end(services: ConnectionServices, state: str, code: str | None, error: str | None) -> CallbackResult:
    consumed = _consume(services, state)
    if isinstance(consumed, CallbackResult):
        return consumed
    pending = consumed
    logger.append_keys(connection_id=pending.connection_id, bank_code=pending.bank_code)

    if error is not None or not code:
        mapped = CallbackError.TOKEN_EXCHANGE_FAILED
        if error is not None:
            mapped = _BANK_ERRORS.get(error.strip().lower(), CallbackError.TOKEN_EXCHANGE_FAILED)
        reason = "bank_error" if error else "missing_code"
        return _failed(pending.return_url, mapped, reason=reason, journey=(services, pending))

    issued = _exchange(services, pending, code, state)
    if isinstance(issued, CallbackResult):
        return issued
    completion = secrets.token_urlsafe(COMPLETION_BYTES)
    tokens = TokenPair(access_token=issued.access_token, refresh_token=issued.refresh_token)
    try:
        connection = _authorize(services, pending, issued, tokens, completion)
    except AispError as exc:
        logger.exception("tokens could not be stored", error_type=type(exc).__name__)
        # Never leave live tokens nobody holds: give them back to the bank.
        bank = services.registry.get(pending.bank_code)
        revoke_quietly(
            services.bank, bank, tokens, what="unstored", user_id=pending.user_id, connection_id=pending.connection_id
        )
        return _failed(
            pending.return_url,
            CallbackError.TOKEN_EXCHANGE_FAILED,
            reason=type(exc).__name__,
            journey=(services, pending),
        )

    metrics.add_metric(name="ConnectionAuthorized", unit=MetricUnit.Count, value=1)
    logger.info("connection authorized; awaiting completion", status=connection.status.value)
    audit.lifecycle(connection, "authorized")
    redirect = append_query(
        pending.return_url, {"status": "authorized", "bank_code": connection.bank_code, "completion": completion}
    )
    return CallbackResult(outcome="authorized", redirect_url=redirect, connection_id=connection.connection_id)


def _consume(services: ConnectionServices, state: str) -> OAuthState | CallbackResult:
    """The pending request behind ``state``, consumed now; or the failure to report."""
    try:
        return services.states.consume(state, now=services.clock.now())
    except OAuthStateRejectedError as exc:
        error_code = CallbackError.STATE_EXPIRED if exc.reason == "expired" else CallbackError.INVALID_STATE
        if exc.bank_code:
            logger.append_keys(bank_code=exc.bank_code, connection_id=exc.connection_id)
        return _failed(exc.return_url, error_code, reason=exc.reason)


def _exchange(
    services: ConnectionServices, pending: OAuthState, code: str, state: str
) -> IssuedTokens | CallbackResult:
    """The bank's tokens for ``code``; or the failure to report (bank down vs. bank refusal vs. our side)."""
    try:
        verifier = None
        if pending.sealed_code_verifier is not None:
            verifier = open_verifier(pending.sealed_code_verifier, state=state)
        issued = _audited_exchange(services, pending, code, verifier)
    except (BankUnavailableError, BankRateLimitedError) as exc:
        return _failed(
            pending.return_url, CallbackError.BANK_UNAVAILABLE, reason=type(exc).__name__, journey=(services, pending)
        )
    except UpstreamError as exc:
        return _failed(
            pending.return_url,
            CallbackError.TOKEN_EXCHANGE_FAILED,
            reason=type(exc).__name__,
            oauth_error=exc.details.get("oauth_error"),
            journey=(services, pending),
        )
    except AispError as exc:  # our side: configuration, credentials
        logger.exception("code exchange could not be attempted", error_type=type(exc).__name__)
        return _failed(
            pending.return_url,
            CallbackError.TOKEN_EXCHANGE_FAILED,
            reason=type(exc).__name__,
            journey=(services, pending),
        )
    return issued


def _audited_exchange(
    services: ConnectionServices, pending: OAuthState, code: str, verifier: str | None
) -> IssuedTokens:
    """The code exchange at the bank, audited (the person is at the bank's redirect: attended)."""
    with audit.calling(
        "exchange_code",
        user_id=pending.user_id,
        bank_code=pending.bank_code,
        connection_id=pending.connection_id,
        attended=True,
    ):
        return services.bank.exchange_code(
            pending.bank_code, code=code, redirect_uri=pending.redirect_uri, code_verifier=verifier
        )


def _authorize(
    services: ConnectionServices, pending: OAuthState, issued: IssuedTokens, tokens: TokenPair, completion: str
) -> Connection:
    """Seal the new tokens on the connection, awaiting completion, with their completion value; retry a lost race.

    A previous authorization still awaiting completion is replaced and its tokens revoked at the bank (at BPCE the
    new strong authentication has already revoked them if they were the same person's; if not, nobody should keep
    them). The connection's serving tokens (an ACTIVE reconnection) are left alone.
    """
    bank = services.registry.get(pending.bank_code)
    reauth_days = min(bank.capabilities.refresh_token_days, services.reauth_days)
    now = services.clock.now()
    for _ in range(MAX_WRITE_ATTEMPTS):
        current, replaced = _current(services, pending)
        resume = current.status if current is not None else ConnectionStatus.PENDING
        authorization = PendingAuthorization(
            authorization_id=f"az_{uuid.uuid4().hex}",
            authorized_at=now,
            expires_at=now + services.completion_ttl,
            access_expires_at=access_expiry(issued, now),
            reauth_due_at=now + timedelta(days=reauth_days),
            has_refresh_token=tokens.refresh_token is not None,
            # An AUTHORIZED connection resumes what the replaced authorization would have.
            resume_status=current.pending.resume_status if current and current.pending else resume,
            resume_reason=_resume_reason(current),
        )
        try:
            connection = services.connections.authorize(
                user_id=pending.user_id,
                bank_code=pending.bank_code,
                connection_id=current.connection_id if current else pending.connection_id,
                expected_version=current.version if current else None,
                tokens=tokens,
                pending=authorization,
                completion_hash=completion_hash(completion),
                now=now,
            )
        except ConflictError:
            logger.info("connection changed while storing the authorization; retrying")
            continue
        if replaced is not None:
            revoke_quietly(
                services.bank,
                bank,
                replaced,
                what="replaced_authorization",
                user_id=pending.user_id,
                connection_id=connection.connection_id,
            )
        return connection
    raise ConflictError("connection kept changing while storing tokens", details={"bank_code": pending.bank_code})


def _current(services: ConnectionServices, pending: OAuthState) -> tuple[Connection | None, TokenPair | None]:
    """The connection as it is now, and the tokens of an authorization of it still awaiting completion."""
    try:
        connection, _, awaiting = services.connections.get_with_all_tokens(pending.user_id, pending.bank_code)
    except ConnectionNotFoundError:  # never created (a record lost), or purged: created again below
        return None, None
    except TokenCryptoError as exc:
        # Unreadable: they cannot be revoked, but they are replaced all the same.
        logger.warning("pending tokens unreadable; replacing them", error_type=type(exc).__name__)
        return services.connections.find(pending.user_id, pending.bank_code), None
    return connection, awaiting


def _resume_reason(current: Connection | None) -> StatusReason | None:
    if current is None:
        return None
    if current.pending is not None:
        return current.pending.resume_reason
    return current.status_reason if current.status in RESUMABLE else None


def _failed(
    return_url: str | None,
    error: CallbackError,
    *,
    reason: str,
    oauth_error: object = None,
    journey: tuple[ConnectionServices, OAuthState] | None = None,
) -> CallbackResult:
    # Its own EMF record, so the error_code dimension never leaks onto other metrics of the invocation.
    with single_metric(name="ConnectionFailed", unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="error_code", value=error.value)
    logger.info("connection failed", error_code=error.value, reason=reason, oauth_error=oauth_error)
    if journey is not None:
        _fail_first_login(*journey, error)
    if return_url is None:
        return CallbackResult(outcome=error.value, redirect_url=None)
    return CallbackResult(
        outcome=error.value, redirect_url=append_query(return_url, {"status": "error", "error": error.value})
    )


def _fail_first_login(services: ConnectionServices, journey: OAuthState, error: CallbackError) -> None:
    """A first login that failed leaves its connection FAILED with the reason, not PENDING forever; a connection
    in any other state (a reconnection) is left as it was."""
    reason = _FAILED_REASONS.get(error)
    if reason is None:
        return
    try:
        current = services.connections.find(journey.user_id, journey.bank_code)
        if current is not None and current.status is ConnectionStatus.PENDING:
            failed = services.connections.fail_journey(current, reason=reason, now=services.clock.now())
            audit.lifecycle(failed, "failed", outcome=reason.value)
    except AispError as exc:  # the redirect matters more; the journey's expiry shows it FAILED anyway
        logger.warning("failed login not recorded on the connection", error_type=type(exc).__name__)
