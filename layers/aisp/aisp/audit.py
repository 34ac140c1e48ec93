"""The audit trail: one record per bank call and per connection lifecycle change, kept where the fintech keeps it.

A record (never a token, code, state, amount or IBAN) is written the moment it happens, as one JSON line on stdout
marked ``"aisp_audit": 1``, through the ``aisp.audit`` logger, always on whatever the log level; a subscription
filter hands those lines to ``AuditShipperFunction``, which keeps them in ``AuditLogGroup``. Design and fields:
``docs/audit.md``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from aisp import errors

if TYPE_CHECKING:
    from aisp.models.connection import Completion, Connection

__all__ = [
    "MARKER",
    "AuditRecord",
    "bank_call",
    "bank_outcome",
    "calling",
    "completion_rejected",
    "invocation",
    "lifecycle",
    "stream",
]

Kind = Literal["bank_call", "lifecycle"]
# The key that marks an audit line among the functions' log lines (the subscription filter matches on it).
MARKER: Final = "aisp_audit"
MARKER_VERSION: Final = 1

_OUTCOMES: Final[tuple[tuple[type[Exception], str], ...]] = (
    (errors.BankRateLimitedError, "rate_limited"),
    (errors.ReauthRequiredError, "reauth_required"),
    (errors.BankTokenInvalidError, "token_invalid"),
    (errors.BankAccessDeniedError, "access_denied"),
    (errors.BankNotFoundError, "not_found"),
    (errors.BankClientError, "client_error"),
    (errors.BankUnavailableError, "unavailable"),
    (errors.BankNotImplementedError, "not_implemented"),
    (errors.BankSignatureInvalidError, "signature_invalid"),
    (errors.BankProtocolError, "protocol_error"),
    (errors.UpstreamError, "failed"),
)


def bank_outcome(error: Exception | None) -> str:
    """The ``outcome`` of a bank call that raised ``error`` (``ok`` when it did not), as in the ``BankCall`` metric."""
    if error is None:
        return "ok"
    return next((name for cls, name in _OUTCOMES if isinstance(error, cls)), "error")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited fact (see ``docs/audit.md``)."""

    time: str
    kind: Kind
    operation: str
    outcome: str
    user_id: str
    bank_code: str
    connection_id: str | None = None
    account_id: str | None = None
    attended: bool | None = None
    caller: str | None = None
    request_id: str | None = None
    function: str | None = None

    def fields(self) -> dict[str, Any]:
        """The record's fields that have a value."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    def line(self) -> str:
        """The record as the marked JSON line the functions write."""
        return json.dumps({MARKER: MARKER_VERSION, **self.fields()}, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class _Invocation:
    request_id: str | None = None
    caller: str | None = None
    function: str | None = None


_NO_INVOCATION: Final = _Invocation()  # frozen: records made outside a handler (tests) carry no request
_current: ContextVar[_Invocation] = ContextVar("aisp_audit_invocation", default=_NO_INVOCATION)  # noqa: B039


class _StdoutHandler(logging.Handler):
    """Each record's line on the current ``sys.stdout`` (where Lambda's runtime reads), in one write."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stdout
        stream.write(record.getMessage() + "\n")
        stream.flush()


# Not Powertools' logger: audit lines are never filtered by POWERTOOLS_LOG_LEVEL, nor formatted as log lines.
_HANDLER_NAME: Final = "aisp.audit.stdout"
stream = logging.getLogger("aisp.audit")
stream.setLevel(logging.INFO)
stream.propagate = False
# One handler, whatever the imports: a process that imports this module afresh (a local stack) replaces it.
for _old in [handler for handler in stream.handlers if handler.get_name() == _HANDLER_NAME]:
    stream.removeHandler(_old)
_handler = _StdoutHandler()
_handler.set_name(_HANDLER_NAME)
stream.addHandler(_handler)


def _emit(record: AuditRecord) -> None:
    stream.info(record.line())


def _add(kind: Kind, operation: str, outcome: str, *, user_id: str, bank_code: str, **fields: Any) -> None:
    current = _current.get()
    _emit(
        AuditRecord(
            time=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            kind=kind,
            operation=operation,
            outcome=outcome,
            user_id=user_id,
            bank_code=bank_code,
            caller=current.caller,
            request_id=current.request_id,
            function=current.function,
            **fields,
        )
    )


def bank_call(
    operation: str,
    outcome: str,
    *,
    user_id: str,
    bank_code: str,
    connection_id: str | None,
    account_id: str | None = None,
    attended: bool | None = None,
) -> None:
    """Record one call to a bank (``outcome``: ``ok`` or the failure's kind, see :func:`bank_outcome`).

    ``attended``: whether the user was present; by default, whether a user's request made the call (a token call
    of the refresher is not attended, one made while serving the user's request is).
    """
    if attended is None:
        attended = _current.get().caller is not None
    _add(
        "bank_call",
        operation,
        outcome,
        user_id=user_id,
        bank_code=bank_code,
        connection_id=connection_id,
        account_id=account_id,
        attended=attended,
    )


@contextlib.contextmanager
def calling(
    operation: str,
    *,
    user_id: str,
    bank_code: str,
    connection_id: str | None,
    account_id: str | None = None,
    attended: bool | None = None,
) -> Iterator[None]:
    """Audit the bank call made in the block: ``ok``, or the kind of the error it raised (re-raised)."""
    outcome = "ok"
    try:
        yield
    except Exception as exc:
        outcome = bank_outcome(exc)
        raise
    finally:
        bank_call(
            operation,
            outcome,
            user_id=user_id,
            bank_code=bank_code,
            connection_id=connection_id,
            account_id=account_id,
            attended=attended,
        )


def lifecycle(connection: Connection, change: str, *, outcome: str = "ok") -> None:
    """Record a change of ``connection``'s lifecycle (``started``, ``authorized``, ``activated``, ...)."""
    _add(
        "lifecycle",
        change,
        outcome,
        user_id=connection.user_id,
        bank_code=connection.bank_code,
        connection_id=connection.connection_id,
    )


def completion_rejected(completion: Completion) -> None:
    """Record that another user than the one who started a login tried its completion value (the record's
    ``caller`` is that other user; ``user_id`` the connection's own)."""
    _add(
        "lifecycle",
        "completion_rejected",
        "another_user",
        user_id=completion.user_id,
        bank_code=completion.bank_code,
        connection_id=completion.connection_id,
    )


def invocation[F: Callable[..., Any]](handler: F) -> F:
    """Decorate a Lambda handler: the records of its invocation (its worker threads too, through
    :meth:`aisp.observability.LazyTracer.in_worker_thread`) carry its request id, caller and function.

    The request id and the caller come from an HTTP API event (``requestContext.requestId``, the JWT ``sub``);
    a scheduled or queued invocation has the Lambda request id and no caller.
    """

    @functools.wraps(handler)
    def run(event: Any, context: Any, **kwargs: Any) -> Any:
        request = event.get("requestContext") if isinstance(event, dict) else None
        caller = None
        request_id = getattr(context, "aws_request_id", None)
        if isinstance(request, dict):
            request_id = request.get("requestId") or request_id
            claims = ((request.get("authorizer") or {}).get("jwt") or {}).get("claims") or {}
            caller = claims.get("sub") if isinstance(claims.get("sub"), str) else None
        token = _current.set(
            _Invocation(request_id=request_id, caller=caller, function=getattr(context, "function_name", None))
        )
        try:
            return handler(event, context, **kwargs)
        finally:
            _current.reset(token)

    return run  # type: ignore[return-value]
