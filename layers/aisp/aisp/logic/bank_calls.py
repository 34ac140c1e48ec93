"""One request's use of a connection: a usable access token, bank calls timed and counted, one retry after a 401.

* The token comes from :func:`aisp.logic.tokens.usable_tokens` (refreshed on demand within 60 s of its expiry, under
  the refresh lease and conditional writes of the refresher).
* If the bank still answers 401 (revoked or expired earlier than we were told), the token is refreshed once and
  the call retried once: first we re-read the connection (someone may have refreshed meanwhile), and only if it still
  holds the token the bank refused do we force a refresh. ``invalid_grant`` on that refresh makes the connection
  REAUTH_REQUIRED (``reauth_required``, 409).
* Every bank call emits one EMF blob: ``BankCall`` (count) and ``BankLatency`` (ms), dimensions ``bank_code``,
  ``operation`` and ``outcome`` (``ok``, ``rate_limited``, ``unavailable``...). These go through their own
  ``EphemeralMetrics`` so that calls made from worker threads (``GET /v1/accounts``) never share a metric set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from aisp import errors
from aisp.logic.services import AccountServices
from aisp.logic.tokens import usable_tokens
from aisp.models.connection import Connection, ConnectionStatus, TokenPair
from aisp.observability import logger

__all__ = ["BankSession", "bank_outcome", "open_session"]

# A margin longer than any access token's life: usable_tokens then refreshes whatever the stored expiry says.
FORCE_REFRESH_MARGIN_SECONDS: Final = 10 * 365 * 86400

_OUTCOMES: Final[tuple[tuple[type[Exception], str], ...]] = (
    (errors.BankRateLimitedError, "rate_limited"),
    (errors.ReauthRequiredError, "reauth_required"),
    (errors.BankTokenInvalidError, "token_invalid"),
    (errors.BankAccessDeniedError, "access_denied"),
    (errors.BankNotFoundError, "not_found"),
    (errors.BankClientError, "client_error"),
    (errors.BankUnavailableError, "unavailable"),
    (errors.BankProtocolError, "protocol_error"),
    (errors.UpstreamError, "failed"),
)


def bank_outcome(error: Exception | None) -> str:
    """The ``outcome`` dimension of a bank call that raised ``error`` (``ok`` when it did not)."""
    if error is None:
        return "ok"
    return next((name for cls, name in _OUTCOMES if isinstance(error, cls)), "error")


def _record_call(bank_code: str, operation: str, outcome: str, elapsed_ms: float) -> None:
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit  # noqa: PLC0415

    emitted = EphemeralMetrics()
    emitted.add_dimension(name="bank_code", value=bank_code)
    emitted.add_dimension(name="operation", value=operation)
    emitted.add_dimension(name="outcome", value=outcome)
    emitted.add_metric(name="BankCall", unit=MetricUnit.Count, value=1)
    emitted.add_metric(name="BankLatency", unit=MetricUnit.Milliseconds, value=round(elapsed_ms, 1))
    emitted.flush_metrics()


def open_session(user_id: str, bank_code: str, services: AccountServices) -> BankSession:
    """A session on the user's connection to ``bank_code``, with a usable access token.

    Raises
    ------
    ConnectionNotFoundError
        No connection to this bank for this user, or one the user deleted (REVOKED).
    ReauthRequiredError
        The connection is PENDING or REAUTH_REQUIRED, or its refresh token was just refused.
    """
    try:
        connection, tokens = usable_tokens(user_id, bank_code, services=services.connections)
    except errors.ReauthRequiredError as exc:
        if exc.details.get("connection_status") == ConnectionStatus.REVOKED.value:
            # Deleted by the user: as gone as a connection that never existed (listed as REVOKED until purged).
            raise errors.ConnectionNotFoundError("connection not found", details={"bank_code": bank_code}) from exc
        raise
    return BankSession(services, connection, tokens)


class BankSession:
    """Calls the bank for one connection; refreshes and retries once after a 401."""

    def __init__(self, services: AccountServices, connection: Connection, tokens: TokenPair) -> None:
        self._services = services
        self.connection = connection
        self._tokens = tokens
        self._refreshed = False

    @property
    def bank_code(self) -> str:
        """The connection's establishment."""
        return self.connection.bank_code

    def call[ResultT](self, operation: str, request: Callable[[str], ResultT]) -> ResultT:
        """Run ``request(access_token)``; after a 401, refresh the token once and run it once more."""
        try:
            return self._timed(operation, request)
        except errors.BankTokenInvalidError:
            if self._refreshed:
                raise
            self._refreshed = True
            logger.info("bank refused the access token; refreshing", bank_code=self.bank_code, operation=operation)
            self._refresh()
            return self._timed(operation, request)

    def _timed[ResultT](self, operation: str, request: Callable[[str], ResultT]) -> ResultT:
        started = time.perf_counter()
        error: Exception | None = None
        try:
            return request(self._tokens.access_token.get_secret_value())
        except Exception as exc:
            error = exc
            raise
        finally:
            _record_call(self.bank_code, operation, bank_outcome(error), (time.perf_counter() - started) * 1000)

    def _refresh(self) -> None:
        refused = self._tokens.access_token.get_secret_value()
        user_id, bank_code = self.connection.user_id, self.bank_code
        connections = self._services.connections
        connection, tokens = usable_tokens(user_id, bank_code, services=connections)
        if tokens.access_token.get_secret_value() == refused:
            connection, tokens = usable_tokens(
                user_id, bank_code, services=connections, margin_seconds=FORCE_REFRESH_MARGIN_SECONDS
            )
        self.connection, self._tokens = connection, tokens
