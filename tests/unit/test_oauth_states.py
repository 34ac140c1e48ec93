"""OAuth states: stored hashed, consumed exactly once, expiry checked without waiting for the TTL purge."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from aisp.dal import DynamoOAuthStateRepository, hash_state
from aisp.errors import OAuthStateRejectedError
from tests.conftest import STATES_TABLE
from tests.fakes import START, serialize_dynamodb_writes

STATE = "Zm9yZ2V0LW1lLW5vdC0xMjgtYml0cy1vZi1yYW5kb21uZXNz"


@pytest.fixture
def states(aws):
    return DynamoOAuthStateRepository()


def _create(states, state=STATE, now=START):
    return states.create(
        state=state,
        user_id="user-marc",
        bank_code="13807",
        connection_id="cn_1",
        return_url="https://app.example.com/connections/done",
        redirect_uri="https://api.example.com/oauth/callback",
        now=now,
        expires_at=now + timedelta(minutes=10),
    )


def test_only_the_hash_of_the_state_is_stored(aws, states):
    _create(states)

    items = aws.dynamodb.scan(TableName=STATES_TABLE)["Items"]
    assert [item["state_hash"]["S"] for item in items] == [hash_state(STATE)]
    assert STATE not in str(items)
    assert items[0]["expires_at"] == {"N": str(int((START + timedelta(minutes=10)).timestamp()))}


def test_a_state_is_consumed_once(states):
    _create(states)

    consumed = states.consume(STATE, now=START + timedelta(minutes=1))
    with pytest.raises(OAuthStateRejectedError) as replay:
        states.consume(STATE, now=START + timedelta(minutes=2))

    assert consumed.user_id == "user-marc" and consumed.consumed_at == START + timedelta(minutes=1)
    assert replay.value.reason == "used"
    assert replay.value.return_url == "https://app.example.com/connections/done"


def test_an_unknown_state_has_no_return_url(states):
    with pytest.raises(OAuthStateRejectedError) as caught:
        states.consume("forged", now=START)

    assert caught.value.reason == "unknown"
    assert caught.value.return_url is None


def test_an_expired_state_is_refused_even_before_the_ttl_purge(states):
    _create(states)

    with pytest.raises(OAuthStateRejectedError) as caught:
        states.consume(STATE, now=START + timedelta(minutes=10))

    assert caught.value.reason == "expired"
    assert caught.value.return_url == "https://app.example.com/connections/done"
    # A used state is reported as used (a replay) even once it has expired
    _create(states, "second-state")
    states.consume("second-state", now=START)
    with pytest.raises(OAuthStateRejectedError) as used:
        states.consume("second-state", now=START + timedelta(hours=1))
    assert used.value.reason == "used"


def test_concurrent_consumers_get_exactly_one_success(states):
    # Given one state and eight callbacks racing for it
    _create(states)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def consume() -> None:
        barrier.wait()
        try:
            states.consume(STATE, now=START + timedelta(seconds=5))
            outcomes.append("consumed")
        except OAuthStateRejectedError as exc:
            outcomes.append(exc.reason)

    # When they all consume at once (moto made atomic per write, as DynamoDB is)
    with serialize_dynamodb_writes():
        threads = [threading.Thread(target=consume) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # Then exactly one wins
    assert sorted(outcomes) == ["consumed"] + ["used"] * 7
