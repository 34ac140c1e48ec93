"""The sandbox's clock: real time plus an offset that the admin API can move forward.

Token, code and refresh expiries, daily quotas (Europe/Paris calendar days) and the transaction history all read
this clock, so advancing it simulates the passing of hours or days without waiting.
"""

from __future__ import annotations

import threading
import time
from datetime import date, datetime
from functools import cache
from zoneinfo import ZoneInfo


@cache
def paris() -> ZoneInfo:
    """Europe/Paris, loaded on first use (no import-time I/O)."""
    return ZoneInfo("Europe/Paris")


class Clock:
    """Wall clock with an adjustable offset, shared by every bank of one sandbox."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        """Seconds added to real time."""
        return self._offset

    def now(self) -> float:
        """Current sandbox time as a POSIX timestamp."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward (or back, with a negative value) by ``seconds``."""
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        """Back to real time."""
        with self._lock:
            self._offset = 0.0

    def paris_now(self) -> datetime:
        """Current sandbox time in Europe/Paris."""
        return datetime.fromtimestamp(self.now(), paris())

    def today(self) -> date:
        """Current calendar day in Europe/Paris (the day BPCE counts quotas on)."""
        return self.paris_now().date()
