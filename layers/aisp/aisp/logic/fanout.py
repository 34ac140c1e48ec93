"""How a scheduled run that cannot do all its due work splits the rest into queue messages: consecutive shards
grouped so each group is one invocation's work. Used by the token refresher and the sync (``docs/refresh.md``, A
scheduled run; ``docs/sync.md``, The schedule).
"""

from __future__ import annotations

__all__ = ["partition_shards"]


def partition_shards(counts: list[tuple[int, int]], capacity: int) -> list[list[int]]:
    """Consecutive ``(shard, due)`` grouped so each group's due count stays within ``capacity`` (a bigger shard is
    alone)."""
    groups: list[list[int]] = []
    current: list[int] = []
    load = 0
    for shard, due in counts:
        if current and load + due > capacity:
            groups.append(current)
            current, load = [], 0
        current.append(shard)
        load += due
    if current:
        groups.append(current)
    return groups
