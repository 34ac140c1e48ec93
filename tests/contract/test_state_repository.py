"""OAuth states on both implementations: consumed exactly once, expiry checked without waiting for the TTL purge."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from aisp.dal import hash_state
from aisp.errors import ConflictError, OAuthStateRejectedError
from aisp.models.connection import OAuthState
from tests.contract.support import STATE, create_state
from tests.fakes import START


def test_a_state_is_stored_by_its_hash_with_its_sealed_verifier(states):
    created = create_state(states, sealed_code_verifier=b"\x01sealed-verifier")

    assert created == OAuthState(
        state_hash=hash_state(STATE),
        user_id="user-marc",
        bank_code="13807",
        connection_id="cn_1",
        return_url="https://app.example.com/connections/done",
        redirect_uri="https://api.example.com/oauth/callback",
        created_at=START,
        expires_at=START + timedelta(minutes=10),
        sealed_code_verifier=b"\x01sealed-verifier",
    )
    assert states.consume(STATE, now=START).sealed_code_verifier == b"\x01sealed-verifier"


def test_a_state_expires_to_the_second_as_its_ttl_is_stored(states):
    now = START + timedelta(microseconds=900_000)

    created = create_state(states, now=now)

    assert created.created_at == now
    assert created.expires_at == START + timedelta(minutes=10)  # the TTL attribute keeps whole seconds
    assert states.consume(STATE, now=START + timedelta(minutes=9, seconds=59, microseconds=999_999)).consumed_at


def test_a_state_is_never_overwritten(states):
    create_state(states)

    with pytest.raises(ConflictError) as caught:
        create_state(states, now=START + timedelta(minutes=1))

    assert caught.value.details == {"operation": "create_oauth_state", "bank_code": "13807", "connection_id": "cn_1"}
    assert states.consume(STATE, now=START + timedelta(minutes=10, seconds=-1)).created_at == START


def test_a_state_is_consumed_once(states):
    create_state(states)

    consumed = states.consume(STATE, now=START + timedelta(minutes=1))
    with pytest.raises(OAuthStateRejectedError) as replay:
        states.consume(STATE, now=START + timedelta(minutes=2))

    assert consumed.user_id == "user-marc" and consumed.consumed_at == START + timedelta(minutes=1)
    assert replay.value.reason == "used"
    assert replay.value.return_url == "https://app.example.com/connections/done"
    assert replay.value.details == {"reason": "used", "bank_code": "13807", "connection_id": "cn_1"}


def test_an_unknown_state_has_no_return_url(states):
    with pytest.raises(OAuthStateRejectedError) as caught:
        states.consume("forged", now=START)

    assert caught.value.reason == "unknown"
    assert caught.value.return_url is None
    assert caught.value.details == {"reason": "unknown"}


def test_an_expired_state_is_refused_even_before_the_ttl_purge(states):
    create_state(states)

    with pytest.raises(OAuthStateRejectedError) as caught:
        states.consume(STATE, now=START + timedelta(minutes=10))

    assert caught.value.reason == "expired"
    assert caught.value.return_url == "https://app.example.com/connections/done"
    # A used state is reported as used (a replay) even once it has expired
    create_state(states, "second-state")
    states.consume("second-state", now=START)
    with pytest.raises(OAuthStateRejectedError) as used:
        states.consume("second-state", now=START + timedelta(hours=1))
    assert used.value.reason == "used"
    # And the expired one was not consumed by the refusal
    with pytest.raises(OAuthStateRejectedError) as again:
        states.consume(STATE, now=START + timedelta(minutes=11))
    assert again.value.reason == "expired"


def test_concurrent_consumers_get_exactly_one_success(backend, states):
    # Given one state and eight callbacks racing for it
    create_state(states)
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
    with backend.serialized():
        threads = [threading.Thread(target=consume) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # Then exactly one wins
    assert sorted(outcomes) == ["consumed"] + ["used"] * 7
