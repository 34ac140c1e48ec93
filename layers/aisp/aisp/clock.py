"""Time: the :class:`Clock` port the use cases read "now" from, the real one, and epoch seconds as stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "SystemClock", "epoch"]


class Clock(Protocol):
    """Where "now" comes from (a fake one in tests moves forward on demand)."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    """The real clock, to the second (stored timestamps and API answers carry no microseconds)."""

    def now(self) -> datetime:
        """``datetime.now(UTC)`` without microseconds."""
        return datetime.now(UTC).replace(microsecond=0)


def epoch(moment: datetime) -> int:
    """Whole seconds since the epoch: how TTLs, leases and due times are stored and compared."""
    return int(moment.timestamp())
