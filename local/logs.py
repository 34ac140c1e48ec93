"""CloudWatch Logs subscription filters, emulated: the functions' matching log lines delivered to the template's
destination function, as CloudWatch Logs would (a ``awslogs.data`` event: base64 of gzipped JSON, every second).

Lambda's runtime reads a function's stdout; here every function shares the process's, so the stack listens where
the lines a subscription of this template matches are written: the ``aisp.audit`` logger (the audit trail,
``docs/audit.md``). A delivery the destination fails is tried again (as Lambda retries an asynchronous invocation
twice), then kept in :attr:`SubscriptionDelivery.dead_letters`.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from local.template import ACCOUNT_ID, Subscription

if TYPE_CHECKING:
    from local.adapter import FunctionRuntime

logger = logging.getLogger("local.logs")

# The loggers whose lines stand for the functions' stdout here (see the module docstring).
FUNCTION_LINE_LOGGERS: Final = ("aisp.audit",)
ATTEMPTS: Final = 3
DEFAULT_INTERVAL_SECONDS: Final = 1.0


@dataclass(slots=True)
class _Line:
    timestamp: int
    message: str
    attempts: int = 0
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class SubscriptionDelivery(logging.Handler):
    """One subscription filter: collects matching lines, delivers them to its destination function.

    Parameters
    ----------
    subscription
        The filter (pattern and destination).
    destination
        The destination function, loaded.
    log_group
        The subscribed log group's name (what ``logGroup`` says in the delivered events).
    interval
        Seconds between deliveries (:meth:`deliver` delivers at once).
    """

    def __init__(
        self,
        subscription: Subscription,
        destination: FunctionRuntime,
        *,
        log_group: str,
        interval: float = DEFAULT_INTERVAL_SECONDS,
    ) -> None:
        super().__init__(level=logging.INFO)
        self.interval = interval
        self.subscription = subscription
        self.log_group = log_group
        self.dead_letters: list[str] = []
        self._destination = destination
        self._pending: list[_Line] = []
        self._pending_lock = threading.Lock()
        self._deliver_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Take a function's line if the filter matches it."""
        line = record.getMessage()
        if self.subscription.matches(line):
            with self._pending_lock:
                self._pending.append(_Line(int(record.created * 1000), line))

    def attach(self) -> None:
        """Listen to the functions' lines and start delivering every second."""
        for name in FUNCTION_LINE_LOGGERS:
            logging.getLogger(name).addHandler(self)
        self._thread = threading.Thread(target=self._run, name=f"local-logs-{self.subscription.name}", daemon=True)
        self._thread.start()

    def detach(self) -> None:
        """Stop listening; what was collected is delivered first."""
        for name in FUNCTION_LINE_LOGGERS:
            logging.getLogger(name).removeHandler(self)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.deliver()

    def deliver(self) -> int:
        """Deliver what was collected now, in one invocation; returns how many lines the destination took."""
        with self._deliver_lock:
            with self._pending_lock:
                lines, self._pending = self._pending, []
            if not lines:
                return 0
            try:
                self._destination.invoke(self._event(lines))
            except Exception:  # noqa: BLE001 - the destination's failure: retried, then a dead letter
                self._retry(lines)
                return 0
            return len(lines)

    def _retry(self, lines: list[_Line]) -> None:
        again = []
        for line in lines:
            line.attempts += 1
            if line.attempts >= ATTEMPTS:
                self.dead_letters.append(line.message)
            else:
                again.append(line)
        logger.warning(
            "subscription %s: delivery failed; %d lines to retry, %d dead letters",
            self.subscription.name,
            len(again),
            len(self.dead_letters),
        )
        with self._pending_lock:
            self._pending[:0] = again

    def _event(self, lines: list[_Line]) -> dict[str, object]:
        payload = {
            "messageType": "DATA_MESSAGE",
            "owner": ACCOUNT_ID,
            "logGroup": self.log_group,
            "logStream": "local",
            "subscriptionFilters": [self.subscription.name],
            "logEvents": [
                {"id": line.event_id, "timestamp": line.timestamp, "message": line.message} for line in lines
            ],
        }
        data = base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()
        return {"awslogs": {"data": data}}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            started = time.monotonic()
            delivered = self.deliver()
            if delivered:
                logger.debug(
                    "subscription %s: %d lines in %.0f ms",
                    self.subscription.name,
                    delivered,
                    (time.monotonic() - started) * 1000,
                )
