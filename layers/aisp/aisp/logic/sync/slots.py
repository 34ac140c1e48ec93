"""A connection's sync times: its Paris day split in ``runs_per_day`` equal parts, each slot at the same offset into
its part (a hash of the connection's id), so a deployment's connections spread over the day and none is synced more
than ``runs_per_day`` times a Paris day: no slot is in its part's last hour, so the run that takes it, up to an hour
late, is still in its day. Design: ``docs/sync.md`` (The schedule, Live reads).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Final

from aisp.models.quota import paris_day, quota_day_seconds, quota_resets_at

__all__ = ["LATE_MARGIN", "next_slot", "previous_slot"]

# No slot is this close to the end of its part of the day (half the part at most): the schedule's runs (every 30
# minutes by default) take it before the Paris day ends, so its reads count on its own day.
LATE_MARGIN: Final = timedelta(hours=1)


def _slots(connection_id: str, day: date, runs_per_day: int) -> Iterator[datetime]:
    """The connection's sync times in a Paris day, exact: its offset into each of the day's equal parts."""
    fraction = int.from_bytes(hashlib.sha256(connection_id.encode()).digest()[:8], "big") / 2**64
    length = quota_day_seconds(day)
    start = quota_resets_at(day) - timedelta(seconds=length)
    part = length / runs_per_day
    usable = part - min(LATE_MARGIN.total_seconds(), part / 2)
    for index in range(runs_per_day):
        yield start + timedelta(seconds=part * index + usable * fraction)


def _rounded(slot: datetime) -> datetime:
    return slot.replace(microsecond=0) + timedelta(seconds=1)


def next_slot(connection_id: str, now: datetime, runs_per_day: int) -> datetime:
    """The connection's first sync time after ``now``: its offset into one of the Paris day's equal parts."""
    day = paris_day(now)
    for candidate_day in (day, day + timedelta(days=1)):
        for slot in _slots(connection_id, candidate_day, runs_per_day):
            if slot > now:
                return _rounded(slot)
    raise AssertionError("a day always has a slot after now")  # pragma: no cover


def previous_slot(connection_id: str, now: datetime, runs_per_day: int) -> datetime:
    """The connection's sync time before the last one due by ``now``: what a live read stored since then is fresh
    enough for the sync now due (``docs/sync.md``, Live reads)."""
    day = paris_day(now)
    past = [
        _rounded(slot)
        for candidate_day in (day - timedelta(days=2), day - timedelta(days=1), day)
        for slot in _slots(connection_id, candidate_day, runs_per_day)
        if _rounded(slot) <= now
    ]
    return past[-2]
