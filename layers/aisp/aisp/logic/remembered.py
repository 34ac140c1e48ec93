"""What a container last read of its users' connections, so that a read-only bank call need not wait for DynamoDB.

A warm query used to read the connection (and open its sealed tokens) and only then call the bank: the read's
latency was added to every call. With this memory, :func:`aisp.logic.bank_calls.open_session` starts the bank call
at once with the remembered access token and reads the connection **at the same time**; the bank's answer is
returned only once that read confirms it (see :class:`~aisp.logic.bank_calls.BankSession`). The read is never
skipped: it stays the authority, so a DELETE, a revocation or a new consent made through another container takes
effect on the very next call, exactly as before. What the memory saves is waiting for it.

Entries are keyed by (user, bank), written only from a read of that same key, and dropped when a read fails. They
live at most :data:`MAX_AGE_SECONDS`, and at most :data:`MAX_ENTRIES` are kept (the oldest go first). The tokens in
them are in this process's memory anyway during a call; nothing here is logged or written anywhere.
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
