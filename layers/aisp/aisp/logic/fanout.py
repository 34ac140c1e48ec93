"""How a scheduled run that cannot do all its due work splits the rest into queue messages: consecutive shards
grouped so each group is one invocation's work. Used by the token refresher and the sync (``docs/refresh.md``, A
scheduled run; ``docs/sync.md``, The schedule).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aisp.errors import AispError, FanoutError
from aisp.logic.ports import FanoutQueue
from aisp.models.refresh import FanoutRequest
from aisp.observability import logger

__all__ = ["FanoutPlan", "capacity", "partition_shards", "plan_fanout"]


@dataclass(frozen=True, slots=True)
class FanoutPlan:
    """The shards this invocation works on, the groups sent to the queue, and whether the queue refused them (then
    ``local`` holds every shard with due work and ``fanned_out`` is empty)."""

    local: list[int]
    fanned_out: list[list[int]] = field(default_factory=list)
    send_failed: bool = False


def capacity(rate_per_second: float, seconds_left: float) -> int:
    """Due items one invocation gets through in the time it has left (at least one, and at least a second's)."""
    return max(1, int(rate_per_second * max(1.0, seconds_left)))


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


def plan_fanout(
    shards: list[int],
    *,
    count_due: Callable[[int], int],
    capacity: int,
    queue: FanoutQueue,
    request: Callable[[tuple[int, ...]], FanoutRequest],
    work: str,
) -> FanoutPlan:
    """Count the due work of each shard, keep the first group of shards here and send the others to ``queue``.

    Parameters
    ----------
    count_due
        The due items of one shard; an ``AispError`` counts as one (the shard stays here, its query will tell).
    capacity
        Due items this invocation gets through (:func:`capacity`).
    request
        The queue message of one group of shards.
    work
        What is counted, for the logs (``"syncs"``, ``"connections"``).

    Returns
    -------
    FanoutPlan
        Shards without due work are left out; when the queue refuses, every shard with due work stays here.
    """
    counts: dict[int, int] = {}
    for shard in shards:
        try:
            counts[shard] = count_due(shard)
        except AispError:
            logger.exception("counting due work failed", work=work, shard=shard)
            counts[shard] = 1
    groups = partition_shards([(shard, n) for shard, n in counts.items() if n > 0], capacity)
    logger.info("due work counted", work=work, due=sum(counts.values()), capacity=capacity, groups=len(groups))
    if len(groups) <= 1:
        return FanoutPlan(local=groups[0] if groups else [])
    local, remote = groups[0], groups[1:]
    requests = [request(tuple(group)) for group in remote]
    try:
        queue.send(requests)
    except FanoutError:
        logger.exception("fan-out failed; working on what fits here, the rest stays due", work=work)
        return FanoutPlan(local=[shard for group in groups for shard in group], send_failed=True)
    return FanoutPlan(local=local, fanned_out=[list(group) for group in remote])
