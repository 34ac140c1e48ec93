"""The bank's browser redirect: consume the ``state`` once, exchange the code, store the tokens encrypted.

Every outcome is a redirect to the ``return_url`` stored with the state, carrying only our own stable words:
``status=connected&bank_code=..&connection_id=..`` or ``status=error&error=<code>``. The authorization code, the
state and the bank's ``error_description`` are never echoed or logged. A state that matches nothing has no
``return_url``: the caller shows a small "invalid link" page instead (``redirect_url`` is ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from aisp.errors import (
    AispError,
    BankRateLimitedError,
    BankUnavailableError,
    ConflictError,
    OAuthStateRejectedError,
    UpstreamError,
)
from aisp.logic import services as _wiring
from aisp.logic.services import ConnectionServices
from aisp.models.connection import Connection, OAuthState, TokenPair
from aisp.observability import logger, metrics, tracer
from aisp.pkce import open_verifier
from aisp.return_urls import append_query

if TYPE_CHECKING:
    from aisp.stet.schemas import TokenResponse

__all__ = ["CallbackError", "CallbackResult", "handle_callback"]

# BPCE documents one hour; used when the token response has no expires_in.
DEFAULT_ACCESS_TOKEN_SECONDS: Final = 3600
MAX_WRITE_ATTEMPTS: Final = 3
_DAY: Final = timedelta(days=1)


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


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """Where to send the browser. ``redirect_url`` is ``None`` when the state matched nothing (no return_url)."""

    outcome: str  # "connected" or a CallbackError value
    redirect_url: str | None
    connection_id: str | None = None


@tracer.capture_method(capture_response=False)
def handle_callback(
    *,
    state: str | None,
    code: str | None,
    error: str | None,
    services: ConnectionServices | None = None,
) -> CallbackResult:
    """Complete a connection journey.

    Parameters
    ----------
    state, code, error
        The callback's query parameters (``error`` when the user refused or the bank failed).

    Returns
    -------
    CallbackResult
        The redirect to the stored ``return_url`` with the outcome, or no redirect for an unknown state.

    Notes
    -----
    The state is consumed with a conditional write before anything else, so a replay or the second of two
    concurrent callbacks changes nothing and never reaches the bank: exactly one code exchange per state.
    """
    services = services or _wiring.get_connection_services()
    if not state:
        return _failed(None, CallbackError.INVALID_STATE, reason="missing")
    return _journey_end(services, state, code, error)


def _journey_end(services: ConnectionServices, state: str, code: str | None, error: str | None) -> CallbackResult:
    consumed = _consume(services, state)
    if isinstance(consumed, CallbackResult):
        return consumed
    pending = consumed
    logger.append_keys(connection_id=pending.connection_id, bank_code=pending.bank_code)

    if error is not None:
        mapped = _BANK_ERRORS.get(error.strip().lower(), CallbackError.TOKEN_EXCHANGE_FAILED)
        return _failed(pending.return_url, mapped, reason="bank_redirected_with_error")
    if not code:
        return _failed(pending.return_url, CallbackError.TOKEN_EXCHANGE_FAILED, reason="missing_code")

    issued = _exchange(services, pending, code, state)
    if isinstance(issued, CallbackResult):
        return issued
    try:
        connection = _store_tokens(services, pending, issued)
    except AispError as exc:
        logger.exception("tokens could not be stored", error_type=type(exc).__name__)
        return _failed(pending.return_url, CallbackError.TOKEN_EXCHANGE_FAILED, reason=type(exc).__name__)

    metrics.add_metric(name="ConnectionActivated", unit=MetricUnit.Count, value=1)
    logger.info("connection activated", reauth_due_at=connection.reauth_due_at)
    redirect = append_query(
        pending.return_url,
        {"status": "connected", "bank_code": connection.bank_code, "connection_id": connection.connection_id},
    )
    return CallbackResult(outcome="connected", redirect_url=redirect, connection_id=connection.connection_id)


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
) -> TokenResponse | CallbackResult:
    """The bank's tokens for ``code``; or the failure to report (bank down vs. bank refusal vs. our side)."""
    try:
        verifier = None
        if pending.sealed_code_verifier is not None:
            verifier = open_verifier(pending.sealed_code_verifier, state=state)
        return services.bank.exchange_code(
            pending.bank_code, code=code, redirect_uri=pending.redirect_uri, code_verifier=verifier
        )
    except (BankUnavailableError, BankRateLimitedError) as exc:
        return _failed(pending.return_url, CallbackError.BANK_UNAVAILABLE, reason=type(exc).__name__)
    except UpstreamError as exc:
        return _failed(
            pending.return_url,
            CallbackError.TOKEN_EXCHANGE_FAILED,
            reason=type(exc).__name__,
            oauth_error=exc.details.get("oauth_error"),
        )
    except AispError as exc:  # our side: configuration, credentials
        logger.exception("code exchange could not be attempted", error_type=type(exc).__name__)
        return _failed(pending.return_url, CallbackError.TOKEN_EXCHANGE_FAILED, reason=type(exc).__name__)


def _store_tokens(services: ConnectionServices, pending: OAuthState, issued: TokenResponse) -> Connection:
    """Write the new tokens, conditional on the version read; on a lost race, read again and retry.

    The tokens of a fresh strong authentication supersede whatever a concurrent refresh wrote (the bank keeps one
    token pair per PSU, so the older pair is already dead), hence the retry rather than giving up.
    """
    bank = services.registry.get(pending.bank_code)
    tokens = TokenPair(access_token=issued.access_token, refresh_token=issued.refresh_token)
    expires_in = issued.expires_in if issued.expires_in is not None else DEFAULT_ACCESS_TOKEN_SECONDS
    reauth_days = min(bank.capabilities.refresh_token_days, services.reauth_days)
    for _ in range(MAX_WRITE_ATTEMPTS):
        now = services.clock.now()
        current = services.connections.find(pending.user_id, pending.bank_code)
        try:
            return services.connections.activate(
                user_id=pending.user_id,
                bank_code=pending.bank_code,
                connection_id=current.connection_id if current else pending.connection_id,
                expected_version=current.version if current else None,
                tokens=tokens,
                access_expires_at=now + timedelta(seconds=max(0, expires_in)),
                reauth_due_at=_reauth_due(now, reauth_days),
                now=now,
            )
        except ConflictError:
            logger.info("connection changed while storing tokens; retrying")
    raise ConflictError("connection kept changing while storing tokens", details={"bank_code": pending.bank_code})


def _reauth_due(now: datetime, days: int) -> datetime:
    return now + days * _DAY


def _failed(return_url: str | None, error: CallbackError, *, reason: str, oauth_error: object = None) -> CallbackResult:
    # Its own EMF record, so the error_code dimension never leaks onto other metrics of the invocation.
    with single_metric(name="ConnectionFailed", unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="error_code", value=error.value)
    logger.info("connection failed", error_code=error.value, reason=reason, oauth_error=oauth_error)
    if return_url is None:
        return CallbackResult(outcome=error.value, redirect_url=None)
    return CallbackResult(
        outcome=error.value, redirect_url=append_query(return_url, {"status": "error", "error": error.value})
    )
