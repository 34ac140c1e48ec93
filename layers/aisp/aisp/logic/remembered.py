"""What a container last read of its users' connections, so that a read-only bank call need not wait for DynamoDB.

:func:`aisp.logic.bank_calls.open_session` starts the bank call with the remembered access token while it reads the
connection, and returns the bank's answer only once that read confirms it: the read stays the authority, only the
wait for it is saved. Entries are keyed by (user, bank), written only from a read of that same key, dropped when a
read fails, and kept at most :data:`MAX_AGE_SECONDS` (:data:`MAX_ENTRIES` at most, the oldest go first); nothing
here is logged or written anywhere. Design: ``docs/accounts.md`` (A warm query does not wait for DynamoDB).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from aisp.models.connection import Connection, TokenPair

__all__ = ["MAX_AGE_SECONDS", "MAX_ENTRIES", "RememberedConnections"]

MAX_ENTRIES: Final = 1024
# Past this, a remembered token is not worth a speculative bank call: it has likely been refreshed elsewhere.
MAX_AGE_SECONDS: Final = 600.0
# Reads run beside the bank call; GET /v1/accounts opens up to AccountServices.max_workers sessions at once.
READ_WORKERS: Final = 4


class RememberedConnections:
    """Per-container memory of confirmed (connection, tokens), and the threads that read them beside a bank call."""

    def __init__(
        self,
        *,
        max_entries: int = MAX_ENTRIES,
        max_age_seconds: float = MAX_AGE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_entries, self._max_age, self._monotonic = max_entries, max_age_seconds, monotonic
        self._entries: OrderedDict[tuple[str, str], tuple[float, Connection, TokenPair]] = OrderedDict()
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def recall(self, user_id: str, bank_code: str) -> tuple[Connection, TokenPair] | None:
        """The (connection, tokens) last confirmed for this user and bank, unless too old."""
        with self._lock:
            entry = self._entries.get((user_id, bank_code))
            if entry is None:
                return None
            stored_at, connection, tokens = entry
            if self._monotonic() - stored_at > self._max_age:
                del self._entries[(user_id, bank_code)]
                return None
            return connection, tokens

    def remember(self, connection: Connection, tokens: TokenPair) -> None:
        """Keep what a read of ``(connection.user_id, connection.bank_code)`` just returned."""
        key = (connection.user_id, connection.bank_code)
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = (self._monotonic(), connection, tokens)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def forget(self, user_id: str, bank_code: str) -> None:
        """Drop the entry of this user and bank (its read failed: gone, not active, unreadable...)."""
        with self._lock:
            self._entries.pop((user_id, bank_code), None)

    def submit[ResultT](self, read: Callable[[], ResultT]) -> Future[ResultT]:
        """Run ``read`` on a worker thread (started on first use)."""
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - on the first warm call, not at init

        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=READ_WORKERS, thread_name_prefix="connection-read")
            executor = self._executor
        return executor.submit(read)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        """Forget every entry (tests)."""
        with self._lock:
            self._entries.clear()
