"""One request's use of a connection: a usable access token, bank calls timed and counted, one retry after a 401.

The token comes from :func:`aisp.logic.refresh.on_demand.usable_tokens`; a 401 from the bank re-reads the connection
and refreshes once (only if it still holds the refused token), then retries once. Read-only sessions
(``open_session(..., read_only=True)``) of a connection this container has read before
(:mod:`aisp.logic.remembered`) start the bank call at once and read the connection beside it, returning the answer
only if that read confirms it. Every bank call emits ``BankCall`` and ``BankLatency`` through its own
``EphemeralMetrics`` (calls from worker threads never share a metric set). Design: ``docs/accounts.md`` (The token of
a query; A warm query does not wait for DynamoDB).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from aisp import audit, errors
from aisp.audit import bank_outcome
from aisp.logic.quota import QuotaMeter, reserve
from aisp.logic.refresh.on_demand import DEFAULT_MARGIN_SECONDS, usable_tokens
from aisp.logic.services import AccountServices
from aisp.models.connection import Connection, ConnectionStatus, TokenPair
from aisp.observability import logger, tracer

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = ["BankSession", "open_session"]

# A margin longer than any access token's life: usable_tokens then refreshes whatever the stored expiry says.
FORCE_REFRESH_MARGIN_SECONDS: Final = 10 * 365 * 86400


def _record_call(bank_code: str, operation: str, outcome: str, elapsed_ms: float) -> None:
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit  # noqa: PLC0415

    emitted = EphemeralMetrics()
    emitted.add_dimension(name="bank_code", value=bank_code)
    emitted.add_dimension(name="operation", value=operation)
    emitted.add_dimension(name="outcome", value=outcome)
    emitted.add_metric(name="BankCall", unit=MetricUnit.Count, value=1)
    emitted.add_metric(name="BankLatency", unit=MetricUnit.Milliseconds, value=round(elapsed_ms, 1))
    emitted.flush_metrics()


def open_session(
    user_id: str,
    bank_code: str,
    services: AccountServices,
    *,
    attended: bool,
    read_only: bool = False,
    meter: QuotaMeter | None = None,
) -> BankSession:
    """A session on the user's connection to ``bank_code``, with a usable access token.

    ``attended``: the user is present (the calls carry their ``PSU-*`` context), as the audit trail records it;
    otherwise every counted call reserves its unit of the bank's daily quota first (``meter`` hears what is left).
    ``read_only``: the session only reads at the bank, so its first call may overlap the connection's read (see the
    module docstring); the errors below then come from that call instead.

    Raises
    ------
    ConnectionNotFoundError
        No connection to this bank for this user, or one the user deleted (REVOKED).
    ReauthRequiredError
        The connection is PENDING or REAUTH_REQUIRED, or its refresh token was just refused.
    """
    memory = services.remembered
    # Unattended calls never overlap: a stale remembered connection makes the call twice, and the bank would count
    # both against the day's quota while the ledger holds one unit.
    overlap = read_only and attended and memory is not None
    if overlap and memory is not None and services.connections.registry.get(bank_code).capabilities.token_revocation:
        recalled = memory.recall(user_id, bank_code)
        if recalled is not None:
            connection, tokens = recalled
            if not connection.access_expired(services.connections.clock.now(), margin_seconds=DEFAULT_MARGIN_SECONDS):
                read = tracer.in_worker_thread(_read)
                reading = memory.submit(lambda: read(user_id, bank_code, services))
                return BankSession(services, connection, tokens, attended=attended, reading=reading, meter=meter)
    return BankSession(services, *_read(user_id, bank_code, services), attended=attended, meter=meter)


def _read(
    user_id: str, bank_code: str, services: AccountServices, *, margin_seconds: int = DEFAULT_MARGIN_SECONDS
) -> tuple[Connection, TokenPair]:
    """The connection and a usable token (refreshed when due), remembered for the next read-only session."""
    memory = services.remembered
    try:
        connection, tokens = usable_tokens(
            user_id, bank_code, services=services.connections, margin_seconds=margin_seconds
        )
    except Exception as exc:
        if memory is not None:
            memory.forget(user_id, bank_code)
        if (
            isinstance(exc, errors.ReauthRequiredError)
            and exc.details.get("connection_status") == ConnectionStatus.REVOKED.value
        ):
            # Deleted by the user: as gone as a connection that never existed (listed as REVOKED until purged).
            raise errors.ConnectionNotFoundError("connection not found", details={"bank_code": bank_code}) from exc
        raise
    if memory is not None:
        memory.remember(connection, tokens)
    return connection, tokens


class BankSession:
    """Calls the bank for one connection; refreshes and retries once after a 401.

    With ``reading`` (a read of the connection in flight), ``connection`` and the token are what this container
    remembered, until the first call settles them (see the module docstring).
    """

    def __init__(
        self,
        services: AccountServices,
        connection: Connection,
        tokens: TokenPair,
        *,
        attended: bool,
        reading: Future[tuple[Connection, TokenPair]] | None = None,
        meter: QuotaMeter | None = None,
    ) -> None:
        self._services = services
        self.connection = connection
        self._tokens = tokens
        self._attended = attended
        self._reading = reading
        self._meter = meter
        self._refreshed = False

    @property
    def bank_code(self) -> str:
        """The connection's establishment."""
        return self.connection.bank_code

    def call[ResultT](
        self,
        operation: str,
        request: Callable[[str], ResultT],
        *,
        account_id: str | None = None,
        counted: bool = True,
    ) -> ResultT:
        """Run ``request(access_token)``; after a 401, refresh the token once and run it once more.

        Every attempt that reaches the bank is counted (metrics) and audited (for ``account_id`` if it is about one).
        Unattended, a ``counted`` call (not a ``next`` page) first reserves its unit of the bank's daily quota; the
        retry after a 401 uses the same unit (the bank counts no call it could not authenticate).

        Raises
        ------
        QuotaExhaustedError
            Unattended, and the day's units of this account and method are spent: the bank is not called.
        """
        reservation = None
        if counted and not self._attended:
            reservation = reserve(
                self._services,
                user_id=self.connection.user_id,
                bank_code=self.bank_code,
                operation=operation,
                account_id=account_id,
                meter=self._meter,
            )
        call = functools.partial(self._timed, operation, request, account_id)
        try:
            return self._attempts(operation, call)
        except Exception as exc:
            if reservation is not None:
                reservation.settle(exc)
            raise

    def _attempts[ResultT](self, operation: str, call: Callable[[], ResultT]) -> ResultT:
        """``call``, and after a 401 a refresh and ``call`` once more."""
        try:
            return self._first(call) if self._reading is not None else call()
        except errors.BankTokenInvalidError:
            if self._refreshed:
                raise
            self._refreshed = True
            logger.info("bank refused the access token; refreshing", bank_code=self.bank_code, operation=operation)
            self._refresh()
            return call()

    def _first[ResultT](self, call: Callable[[], ResultT]) -> ResultT:
        """The call made on the remembered token while the connection is read; its outcome stands only if the read
        confirms it, else the call is made again on what the read returned."""
        remembered, sent = self.connection, self._tokens.access_token
        try:
            result = call()
        except Exception:
            self._settle()  # the read's own error (gone, not active...) wins over the bank's
            # A refusal stands only for the token the read holds (a 401 on an older one is not this token's).
            if self._confirms(remembered) and self._tokens.access_token == sent:
                raise
        else:
            self._settle()
            if self._confirms(remembered):
                return result
        logger.info("remembered connection was stale; calling again", bank_code=self.bank_code)
        return call()

    def _settle(self) -> None:
        reading, self._reading = self._reading, None
        if reading is not None:
            self.connection, self._tokens = reading.result()

    def _confirms(self, remembered: Connection) -> bool:
        # The bank answered for this connection under this consent; ACTIVE is what the read itself requires.
        return (
            self.connection.connection_id == remembered.connection_id and self.connection.consent == remembered.consent
        )

    def _timed[ResultT](self, operation: str, request: Callable[[str], ResultT], account_id: str | None) -> ResultT:
        started = time.perf_counter()
        error: Exception | None = None
        try:
            return request(self._tokens.access_token.get_secret_value())
        except Exception as exc:
            error = exc
            raise
        finally:
            outcome = bank_outcome(error)
            _record_call(self.bank_code, operation, outcome, (time.perf_counter() - started) * 1000)
            audit.bank_call(
                operation,
                outcome,
                user_id=self.connection.user_id,
                bank_code=self.bank_code,
                connection_id=self.connection.connection_id,
                account_id=account_id,
                attended=self._attended,
            )

    def _refresh(self) -> None:
        refused = self._tokens.access_token.get_secret_value()
        user_id, bank_code = self.connection.user_id, self.bank_code
        connection, tokens = _read(user_id, bank_code, self._services)
        if tokens.access_token.get_secret_value() == refused:
            connection, tokens = _read(user_id, bank_code, self._services, margin_seconds=FORCE_REFRESH_MARGIN_SECONDS)
        self.connection, self._tokens = connection, tokens
