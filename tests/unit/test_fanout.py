"""The fan-out planning both scheduled runs share (``aisp.logic.fanout``): shards counted, grouped within one
invocation's capacity, the first group kept, the others sent as one queue message each; a shard whose count fails
stays here, and a queue that refuses keeps everything here."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aisp.errors import FanoutError, PersistenceError
from aisp.logic.fanout import capacity, partition_shards, plan_fanout
from aisp.models.refresh import FanoutRequest
from tests.fakes import RecordingFanoutQueue

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def _request(group: tuple[int, ...]) -> FanoutRequest:
    return FanoutRequest(shards=group, run_id="run-1", requested_at=NOW)


def test_consecutive_shards_are_grouped_within_the_capacity_a_bigger_shard_alone():
    assert partition_shards([(0, 3), (1, 4), (2, 9), (3, 1), (4, 2)], 7) == [[0, 1], [2], [3, 4]]
    assert partition_shards([], 7) == []


@pytest.mark.parametrize(
    ("rate", "seconds", "expected"),
    [(10.0, 270.0, 2700), (10.0, 0.2, 10), (0.1, 270.0, 27), (0.001, 5.0, 1), (10.0, -3.0, 10)],
)
def test_the_capacity_is_a_rate_over_the_time_left_at_least_one_second_and_one_item(rate, seconds, expected):
    assert capacity(rate, seconds) == expected


def test_the_first_group_stays_here_and_each_other_group_is_one_message():
    # Given shards with 5, 0, 4, 6 and 2 due items and room for 6 here
    due = {0: 5, 1: 0, 2: 4, 3: 6, 4: 2}
    queue = RecordingFanoutQueue()

    # When the run plans
    plan = plan_fanout(list(due), count_due=due.__getitem__, capacity=6, queue=queue, request=_request, work="tests")

    # Then the shard without due work is left out, the first group stays, the others are sent in order
    assert plan.local == [0]
    assert plan.fanned_out == [[2], [3], [4]]
    assert [request.shards for request in queue.requests] == [(2,), (3,), (4,)]
    assert {request.run_id for request in queue.requests} == {"run-1"}
    assert not plan.send_failed


def test_work_that_fits_here_sends_nothing():
    queue = RecordingFanoutQueue()

    plan = plan_fanout([0, 1, 2], count_due=lambda _: 2, capacity=6, queue=queue, request=_request, work="tests")

    assert (plan.local, plan.fanned_out, queue.requests) == ([0, 1, 2], [], [])


def test_no_due_work_means_nothing_to_do_here():
    queue = RecordingFanoutQueue()

    plan = plan_fanout([0, 1], count_due=lambda _: 0, capacity=6, queue=queue, request=_request, work="tests")

    assert (plan.local, plan.fanned_out, queue.requests) == ([], [], [])


def test_a_shard_that_cannot_be_counted_counts_as_one_and_is_not_dropped():
    # Given a store whose count of shard 1 fails
    def count(shard: int) -> int:
        if shard == 1:
            raise PersistenceError("count failed")
        return 3

    queue = RecordingFanoutQueue()

    # When the run plans with room for 4 here
    plan = plan_fanout([0, 1, 2], count_due=count, capacity=4, queue=queue, request=_request, work="tests")

    # Then shard 1 is kept with shard 0 (3 + 1 fit), and shard 2 is sent
    assert plan.local == [0, 1]
    assert plan.fanned_out == [[2]]


def test_a_refused_fan_out_keeps_every_shard_with_due_work_here():
    class Refusing:
        def send(self, requests: list[FanoutRequest]) -> None:
            raise FanoutError("fan-out queue call failed")

    plan = plan_fanout(
        [0, 1, 2, 3], count_due=[5, 0, 5, 5].__getitem__, capacity=5, queue=Refusing(), request=_request, work="tests"
    )

    assert (plan.local, plan.fanned_out, plan.send_failed) == ([0, 2, 3], [], True)
