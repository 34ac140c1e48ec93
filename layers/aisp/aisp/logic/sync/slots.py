"""A connection's sync times: its Paris day split in ``runs_per_day`` equal parts, each slot at the same offset into
its part (a hash of the connection's id), so a deployment's connections spread over the day and none is synced more
than ``runs_per_day`` times a Paris day. Design: ``docs/sync.md`` (The schedule).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from aisp.models.quota import paris_day, quota_day_seconds, quota_resets_at

__all__ = ["next_slot"]


def next_slot(connection_id: str, now: datetime, runs_per_day: int) -> datetime:
    """The connection's first sync time after ``now``: its offset into one of the Paris day's equal parts."""
    fraction = int.from_bytes(hashlib.sha256(connection_id.encode()).digest()[:8], "big") / 2**64
    day = paris_day(now)
    for candidate_day in (day, day + timedelta(days=1)):
        length = quota_day_seconds(candidate_day)
        start = quota_resets_at(candidate_day) - timedelta(seconds=length)
        part = length / runs_per_day
        for index in range(runs_per_day):
            slot = start + timedelta(seconds=part * (index + fraction))
            if slot > now:
                return slot.replace(microsecond=0) + timedelta(seconds=1)
    raise AssertionError("a day always has a slot after now")  # pragma: no cover
