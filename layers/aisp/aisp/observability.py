"""The one place where the Powertools logger, tracer and metrics are created (STYLE.md §6).

Service name, namespace and level come from ``POWERTOOLS_SERVICE_NAME``, ``POWERTOOLS_METRICS_NAMESPACE`` and
``POWERTOOLS_LOG_LEVEL`` (template Globals). Import these singletons everywhere; never create another ``Logger()``.

``tracer`` is a :class:`LazyTracer`: Powertools' ``Tracer()`` imports the X-Ray SDK (and botocore's session
machinery through it) the moment it is built, about 0.25 s on this machine, more than a bare ``import boto3``.
Nothing at init needs it, so the real tracer is built on the first traced call instead of at import. It patches
botocore (DynamoDB and every AWS call) and requests (the bank's calls) only: see :data:`PATCHED_MODULES`.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, overload

from aws_lambda_powertools import Logger, Metrics

from aisp.errors import AispError

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer


# What X-Ray records besides our own subsegments: each AWS call (botocore: DynamoDB, KMS, Secrets Manager...) and each
# bank call (requests). Not Powertools' default, every module the SDK supports: its pynamodb patch records every
# DynamoDB call a second time beside botocore's (two "dynamodb" subsegments for one GetItem), ~0.1-0.2 ms of CPU a
# warm call on Lambda (bench/README.md, A warm call's CPU); httpx and sqlite3 are not used.
PATCHED_MODULES: Final = ("botocore", "requests")


class LazyTracer:
    """The subset of Powertools' ``Tracer`` we use, creating the real one on first use."""

    def __init__(self) -> None:
        self._tracer: Tracer | None = None
        self._lock = threading.Lock()

    @property
    def real(self) -> Tracer:
        """The Powertools tracer (built, and the X-Ray SDK imported, on first access)."""
        if self._tracer is None:
            with self._lock:
                if self._tracer is None:
                    from aws_lambda_powertools import Tracer  # noqa: PLC0415 - the point of this class

                    self._tracer = Tracer(patch_modules=PATCHED_MODULES)
        return self._tracer

    @overload
    def capture_method[F: Callable[..., Any]](
        self, method: F, *, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> F: ...

    @overload
    def capture_method[F: Callable[..., Any]](
        self, method: None = None, *, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> Callable[[F], F]: ...

    def capture_method(
        self,
        method: Callable[..., Any] | None = None,
        *,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> Any:
        """Like ``Tracer.capture_method``; the subsegment wrapper is built on the first call."""
        if method is None:
            return functools.partial(
                self.capture_method, capture_response=capture_response, capture_error=capture_error
            )
        return self._deferred(method, "capture_method", capture_response, capture_error)

    @overload
    def capture_lambda_handler[F: Callable[..., Any]](
        self, handler: F, *, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> F: ...

    @overload
    def capture_lambda_handler[F: Callable[..., Any]](
        self, handler: None = None, *, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> Callable[[F], F]: ...

    def capture_lambda_handler(
        self,
        handler: Callable[..., Any] | None = None,
        *,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> Any:
        """Like ``Tracer.capture_lambda_handler``; the wrapper is built on the first invocation."""
        if handler is None:
            return functools.partial(
                self.capture_lambda_handler, capture_response=capture_response, capture_error=capture_error
            )
        return self._deferred(handler, "capture_lambda_handler", capture_response, capture_error)

    def in_worker_thread[F: Callable[..., Any]](self, function: F) -> F:
        """``function`` for a worker thread: it runs in the calling thread's invocation, under its X-Ray segment.

        A new thread starts with empty context variables (the audit trail's current invocation is one) and the
        X-Ray SDK keeps the current segment in a thread-local, so a call made from a thread pool would find
        neither (and log "cannot find the current segment"). Call this in the submitting thread; the wrapper may
        run in several threads at once (each gets its own copy of the context).
        """
        context = contextvars.copy_context()
        tracer = self.real
        recorder: Any = None if tracer.disabled else tracer.provider
        entity = None if recorder is None else recorder.get_trace_entity()

        def traced(*args: Any, **kwargs: Any) -> Any:
            if recorder is None:
                return function(*args, **kwargs)
            recorder.set_trace_entity(entity)
            try:
                return function(*args, **kwargs)
            finally:
                recorder.clear_trace_entities()

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            return context.copy().run(traced, *args, **kwargs)

        return run  # type: ignore[return-value]

    def _deferred(
        self, function: Callable[..., Any], decorator: str, capture_response: bool | None, capture_error: bool | None
    ) -> Callable[..., Any]:
        traced: Callable[..., Any] | None = None

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal traced
            if traced is None:
                decorate = getattr(self.real, decorator)
                traced = decorate(function, capture_response=capture_response, capture_error=capture_error)
            return traced(*args, **kwargs)

        return wrapper


class ExpectedErrorFilter(logging.Filter):
    """Drops the "Exception received from ..." ERROR line (with traceback) that Powertools' tracer logs for every
    exception leaving a traced function, when the exception is one of ours (:class:`~aisp.errors.AispError`).

    Those are the API's answers (a 404, a bank 503...), logged once by ``aisp.api`` at the level each deserves
    (``info`` for a refusal, ``exception`` for a failure); the tracer's copy turned every 404 into an ERROR line
    with a traceback, which is noise to read and a false positive for any log-based alarm. Anything else (a bug)
    keeps the tracer's line. The exception is still recorded on the X-Ray subsegment.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """``False`` for a record carrying one of our errors."""
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, AispError)


logging.getLogger("aws_lambda_powertools.tracing.tracer").addFilter(ExpectedErrorFilter())

logger = Logger()
tracer = LazyTracer()
metrics = Metrics()

__all__ = ["PATCHED_MODULES", "LazyTracer", "logger", "metrics", "tracer"]
