"""The scheduled refresher's use case over the in-memory stack (a local AES-GCM envelope), a fake bank, a recording
event bus and a fake clock: outcomes, backoff, lifecycle events, time budget and fan-out."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from aisp import wiring
from aisp.dal import refresh_shard
from aisp.errors import (
    BankProtocolError,
    BankRateLimitedError,
    BankUnavailableError,
    ClientCredentialsRejectedError,
    ReauthRequiredError,
    TokenRefreshBatchError,
)
from aisp.logic.refresh.scheduler import (
    RefresherServices,
    RefreshPolicy,
    next_attempt_at,
    refresh_due_connections,
    refresh_fanout_request,
)
from aisp.models.connection import ConnectionStatus, StatusReason, TokenPair
from tests.fakes import FakeBankGateway, RecordingFanoutQueue, RecordingPublisher

POLICY = RefreshPolicy(workers=4, time_reserve_seconds=5)
EXPIRING = "ConnectionExpiring"
REAUTH = "ConnectionReauthRequired"


class SelectiveBank(FakeBankGateway):
    """The fake bank, failing only for the refresh tokens listed in ``errors``."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: dict[str, Exception] = {}

    def refresh(self, bank_code: str, *, refresh_token: str):
        error = self.errors.get(refresh_token)
        if error is not None:
            self._record("refresh", bank_code, refresh_token=refresh_token)
            raise error
        return super().refresh(bank_code, refresh_token=refresh_token)

    def refreshed(self) -> list[str]:
        return [call.kwargs["refresh_token"] for call in self.of("refresh")]


@pytest.fixture
def bank():
    return SelectiveBank()


@pytest.fixture
def publisher():
    return RecordingPublisher()


@pytest.fixture
def repo(memory_stack):
    return memory_stack.connections


@pytest.fixture
def refresher(repo, bank, clock, publisher):
    return RefresherServices(
        registry=wiring.registry(), connections=repo, bank=bank, events=publisher, clock=clock, rng=random.Random(7)
    )


def seed(repo, clock, name: str, *, expires_in=timedelta(minutes=5), reauth_in=timedelta(days=90)):
    """An ACTIVE connection whose refresh token is ``refresh-<name>``."""
    return repo.activate(
        user_id=f"user-{name}",
        bank_code="13807",
        connection_id=f"cn_{name}",
        expected_version=None,
        tokens=TokenPair(access_token=SecretStr(f"access-{name}"), refresh_token=SecretStr(f"refresh-{name}")),
        access_expires_at=clock.now() + expires_in,
        reauth_due_at=clock.now() + reauth_in,
        now=clock.now(),
    )


def run(services, policy=POLICY, remaining_ms=lambda: 300_000, run_id="run-1"):
    return refresh_due_connections(remaining_ms=remaining_ms, run_id=run_id, services=services, policy=policy)


def epoch(moment) -> int:
    return int(moment.timestamp())


# ----------------------------------------------------------------------------------------------------------------


def test_due_connections_are_refreshed_and_the_others_untouched(refresher, repo, bank, clock):
    # Given three connections expiring within the margin and two expiring later
    due = [seed(repo, clock, f"due{i}") for i in range(3)]
    later = [seed(repo, clock, f"later{i}", expires_in=timedelta(minutes=30)) for i in range(2)]

    # When the refresher runs
    summary = run(refresher)

    # Then the bank saw exactly the due refresh tokens, and each due connection got a new token for an hour
    assert sorted(bank.refreshed()) == ["refresh-due0", "refresh-due1", "refresh-due2"]
    assert (summary.attempted, summary.refreshed, summary.failed, summary.transient_failures) == (3, 3, 0, 0)
    for before in due:
        after, tokens = repo.get_with_tokens(before.user_id, "13807")
        assert after.version == before.version + 1
        assert after.access_expires_at == clock.now() + timedelta(hours=1)
        assert tokens.refresh_token.get_secret_value() == f"refresh-{before.connection_id[3:]}"
        assert tokens.access_token.get_secret_value().startswith("access-token-")
        item = repo.raw_connection(before.user_id, "13807")
        assert item["refresh_due_at"] == {"N": str(epoch(clock.now() + timedelta(hours=1)))}
        assert "lease_owner" not in item
    # And the others were not touched at all
    for before in later:
        assert repo.find(before.user_id, "13807") == before


def test_a_refused_refresh_token_means_reauth_required_and_exactly_one_event(refresher, repo, bank, clock, publisher):
    # Given a connection whose refresh token the bank refuses
    connection = seed(repo, clock, "julie")
    bank.errors["refresh-julie"] = ReauthRequiredError(
        "bank refused the grant", status=400, bank_code="13807", details={"oauth_error": "invalid_grant"}
    )

    # When the refresher runs, then again two hours later
    first = run(refresher)
    clock.advance(hours=2)
    second = run(refresher)

    # Then the connection needs a new SCA, left the refresh index, and one event said so
    assert first.reauth_required == 1 and first.failed == 0 and second.attempted == 0
    stored = repo.find("user-julie", "13807")
    assert stored.status is ConnectionStatus.REAUTH_REQUIRED and not stored.has_tokens
    assert not {"refresh_due_at", "refresh_shard", "tokens"} & set(repo.raw_connection("user-julie", "13807"))
    assert len(bank.refreshed()) == 1
    (event,) = publisher.events
    assert event.detail_type.value == REAUTH
    detail = json.loads(event.detail.model_dump_json())
    assert detail["connection_id"] == connection.connection_id
    assert detail["user_id"] == "user-julie" and detail["bank_code"] == "13807"
    assert detail["reauth_due_at"] == connection.reauth_due_at.isoformat().replace("+00:00", "Z")
    assert "refresh-julie" not in event.detail.model_dump_json() and "access-julie" not in event.model_dump_json()


def test_transient_failures_are_retried_later_with_backoff_and_nothing_is_lost(refresher, repo, bank, clock):
    # Given two connections, the bank answering 503 for one of them
    seed(repo, clock, "ok")
    failing = seed(repo, clock, "down", expires_in=timedelta(minutes=8))
    bank.errors["refresh-down"] = BankUnavailableError("bank server error", status=503, bank_code="13807")

    # When the refresher runs
    summary = run(refresher)

    # Then the failure is counted, not raised; the tokens are intact; the next attempt waits, before the expiry
    assert (summary.refreshed, summary.transient_failures, summary.failed) == (1, 1, 0)
    connection, tokens = repo.get_with_tokens("user-down", "13807")
    assert connection == failing
    assert tokens.refresh_token.get_secret_value() == "refresh-down"
    item = repo.raw_connection("user-down", "13807")
    assert item["refresh_failures"] == {"N": "1"} and item["refresh_last_error"] == {"S": "503"}
    next_attempt = int(item["refresh_due_at"]["N"]) - int(POLICY.margin.total_seconds())
    assert epoch(clock.now()) + 150 <= next_attempt <= epoch(failing.access_expires_at)
    assert "lease_owner" not in item

    # When the refresher runs again right away, nothing is attempted; once the backoff is over, it succeeds
    assert run(refresher).attempted == 0
    del bank.errors["refresh-down"]
    clock.advance(seconds=next_attempt - epoch(clock.now()))
    retried = run(refresher)
    assert retried.refreshed == 1
    assert "refresh_failures" not in repo.raw_connection("user-down", "13807")
    assert bank.refreshed().count("refresh-down") == 2


def test_a_bank_retry_after_is_respected(refresher, repo, bank, clock):
    seed(repo, clock, "busy")
    bank.errors["refresh-busy"] = BankRateLimitedError(
        "bank rate limit reached", retry_after=1800, status=429, bank_code="13807"
    )

    assert run(refresher).transient_failures == 1

    due = int(repo.raw_connection("user-busy", "13807")["refresh_due_at"]["N"])
    assert due - int(POLICY.margin.total_seconds()) == epoch(clock.now()) + 1800


def test_the_backoff_grows_and_stays_within_the_connection_life(clock):
    now = clock.now()
    policy = RefreshPolicy(backoff_base_seconds=300, backoff_max_seconds=3600)

    def delay(failures, **bounds):
        bounds.setdefault("access_expires_at", None)
        bounds.setdefault("reauth_due_at", None)
        return (next_attempt_at(now, failures, policy=policy, **bounds) - now).total_seconds()

    assert [delay(n) for n in (1, 2, 3, 4, 5, 6)] == [300, 600, 1200, 2400, 3600, 3600]
    assert delay(3, access_expires_at=now + timedelta(minutes=7)) == 420  # before the token in use dies
    assert delay(5, reauth_due_at=now + timedelta(minutes=30)) == 1800  # never after the refresh token's end
    assert delay(1, access_expires_at=now + timedelta(seconds=10)) == 60  # but never sooner than a minute
    assert delay(1, retry_after=900) == 900  # nor sooner than the bank asked
    assert (next_attempt_at(now, 2, policy=policy, access_expires_at=None, reauth_due_at=None, jitter=0.5) - now) == (
        timedelta(seconds=300)
    )


def test_unexpected_failures_raise_one_batch_error_after_the_others_are_refreshed(refresher, repo, bank, clock):
    # Given one bank answer we cannot parse, one refusal of our client credentials, and two healthy connections
    broken = seed(repo, clock, "broken")
    misconfigured = seed(repo, clock, "client")
    seed(repo, clock, "a")
    seed(repo, clock, "b")
    bank.errors["refresh-broken"] = BankProtocolError("bank token response is empty", status=200, bank_code="13807")
    bank.errors["refresh-client"] = ClientCredentialsRejectedError(
        "bank refused our client credentials", status=401, bank_code="13807", details={"oauth_error": "invalid_client"}
    )

    # When the refresher runs
    with pytest.raises(TokenRefreshBatchError) as raised:
        run(refresher)

    # Then one error names both connections, after the healthy ones were refreshed
    assert sorted(raised.value.failed_ids) == sorted([broken.connection_id, misconfigured.connection_id])
    assert repo.find("user-a", "13807").version == 2 and repo.find("user-b", "13807").version == 2
    # And our own misconfiguration never wiped a user's tokens
    connection, tokens = repo.get_with_tokens("user-client", "13807")
    assert connection.status is ConnectionStatus.ACTIVE and tokens.refresh_token.get_secret_value() == "refresh-client"
    assert repo.raw_connection("user-client", "13807")["refresh_last_error"] == {"S": "invalid_client"}


def _expiring(publisher) -> list[dict[str, Any]]:
    return [json.loads(event.detail.model_dump_json()) for event in publisher.of(EXPIRING)]


def test_expiring_events_are_sent_once_per_threshold_across_runs(refresher, repo, clock, publisher):
    # Given a connection whose strong authentication expires in 20 days
    connection = seed(repo, clock, "marc", reauth_in=timedelta(days=20))

    # When the refresher runs at these points before reauth_due_at (the connection is due every time)
    for days_left in (20, 15, 13.9, 13.5, 8, 6.95, 6.5, 0.98, 0.5, 0.2):
        clock.current = connection.reauth_due_at - timedelta(days=days_left)
        run(refresher)

    # Then each threshold was announced once, when first reached
    details = _expiring(publisher)
    assert [(d["threshold_days"], d["days_left"]) for d in details] == [(14, 14), (7, 7), (1, 1)]
    for detail in details:
        assert detail["connection_id"] == connection.connection_id and detail["user_id"] == "user-marc"
        assert detail["bank_code"] == "13807" and detail["reauth_due_at"].startswith(
            connection.reauth_due_at.date().isoformat()
        )
    assert publisher.of(REAUTH) == []


def test_a_threshold_missed_while_the_refresher_was_down_is_recorded_not_sent_late(refresher, repo, clock, publisher):
    seed(repo, clock, "late", reauth_in=timedelta(days=5))

    run(refresher)
    clock.advance(hours=2)
    run(refresher)

    assert [(d["threshold_days"], d["days_left"]) for d in _expiring(publisher)] == [(7, 5)]


def test_an_event_the_bus_refused_is_sent_by_a_later_run(refresher, repo, clock, publisher):
    # Given a connection 10 days from its reauth date and a bus that fails once
    seed(repo, clock, "marc", reauth_in=timedelta(days=10))
    publisher.fail = True

    # When the refresher runs: the token is refreshed, the event fails, the run says so
    with pytest.raises(TokenRefreshBatchError):
        run(refresher)
    assert repo.find("user-marc", "13807").version == 2

    # Then the next run (the bus back) sends it, and the one after does not repeat it
    publisher.fail = False
    clock.advance(hours=1)
    run(refresher)
    clock.advance(hours=1)
    run(refresher)
    assert [d["threshold_days"] for d in _expiring(publisher)] == [14]


def test_the_event_of_an_on_demand_reauth_is_published_by_the_next_run(refresher, repo, clock, publisher):
    # Given a connection an account query found refused (the accounts function cannot publish events)
    connection = seed(repo, clock, "julie", expires_in=timedelta(hours=1))
    repo.mark_reauth_required(connection, now=clock.now(), notify=True)

    # When the refresher runs twice
    first = run(refresher)
    second = run(refresher)

    # Then one event was published, and the record left the index
    assert [event.detail_type.value for event in publisher.events] == [REAUTH]
    assert first.events_published == 1 and second.attempted == 0
    assert "refresh_due_at" not in repo.raw_connection("user-julie", "13807")


def test_a_run_stops_starting_refreshes_when_its_time_is_spent(refresher, repo, bank, clock):
    # Given 12 due connections and an invocation whose remaining time drops below the reserve after 5 checks
    for i in range(12):
        seed(repo, clock, f"c{i:02d}")
    checks = {"n": 0}

    def remaining_ms() -> int:
        checks["n"] += 1
        return 60_000 if checks["n"] <= 5 else 4_000

    # When the refresher runs
    summary = run(refresher, remaining_ms=remaining_ms)

    # Then it stopped early; what it did not start is still due, untouched, for the next run
    assert summary.stopped_for_time and summary.attempted == 5 and summary.refreshed == 5
    assert len(bank.refreshed()) == 5
    assert run(refresher).refreshed == 7


def test_due_records_beyond_one_invocation_fan_out_by_shard_group(repo, bank, clock, publisher):
    # Given 30 due connections and an invocation that can do about 10 (1 per second, 10 s left after the reserve)
    for i in range(30):
        seed(repo, clock, f"f{i:02d}")
    queue = RecordingFanoutQueue()
    services = RefresherServices(
        registry=wiring.registry(), connections=repo, bank=bank, events=publisher, fanout=queue, clock=clock
    )
    policy = RefreshPolicy(workers=4, time_reserve_seconds=5, rate_per_second=1)

    # When the scheduled run plans
    summary = run(services, policy=policy, remaining_ms=lambda: 15_000)

    # Then it kept one group of shards and sent the others, each group within the capacity
    assert summary.fanned_out and [list(r.shards) for r in queue.requests] == summary.fanned_out
    groups = [summary.shards, *summary.fanned_out]
    all_shards = [shard for group in groups for shard in group]
    assert len(all_shards) == len(set(all_shards))
    due_shards = {refresh_shard(f"user-f{i:02d}", "13807") for i in range(30)}
    assert set(all_shards) == due_shards
    assert summary.refreshed == sum(1 for i in range(30) if refresh_shard(f"user-f{i:02d}", "13807") in summary.shards)

    # And the workers that consume the messages refresh the rest, once each
    for request in queue.requests:
        refresh_fanout_request(request, remaining_ms=lambda: 15_000, run_id="worker", services=services, policy=policy)
    assert sorted(bank.refreshed()) == sorted(f"refresh-f{i:02d}" for i in range(30))
    assert all(r.run_id == "run-1" for r in queue.requests)


def test_without_a_queue_everything_is_refreshed_here(refresher, repo, bank, clock):
    for i in range(6):
        seed(repo, clock, f"n{i}")

    summary = run(refresher, policy=RefreshPolicy(workers=2, time_reserve_seconds=5, rate_per_second=1))

    assert summary.fanned_out == [] and summary.refreshed == 6


# ----------------------------------------------------------------------------------------------------------------
# Configuration and the AWS adapters
# ----------------------------------------------------------------------------------------------------------------


def test_the_policy_comes_from_the_environment(monkeypatch):
    from aisp.errors import ConfigurationError
    from aisp.settings import RefresherSettings, load_settings, parse_settings

    monkeypatch.setenv("EVENT_BUS_NAME", "fintech-bus")
    monkeypatch.setenv("REFRESH_MARGIN_MINUTES", "15")
    monkeypatch.setenv("EXPIRING_NOTICE_DAYS", "1, 30,7")
    load_settings.cache_clear()
    wiring.reset()
    try:
        policy = wiring.refresh_policy()
    finally:
        load_settings.cache_clear()
        wiring.reset()

    assert policy.margin == timedelta(minutes=15) and policy.notice_days == (30, 7, 1)
    assert policy.workers == 32 and policy.lease_seconds == 60
    with pytest.raises(ConfigurationError, match="EVENT_BUS_NAME"):
        parse_settings(RefresherSettings, {})
    with pytest.raises(ConfigurationError, match="EXPIRING_NOTICE_DAYS"):
        parse_settings(RefresherSettings, {"EVENT_BUS_NAME": "b", "EXPIRING_NOTICE_DAYS": "0"})
    with pytest.raises(ConfigurationError, match="REFRESH_BACKOFF"):
        parse_settings(
            RefresherSettings,
            {"EVENT_BUS_NAME": "b", "REFRESH_BACKOFF_BASE_SECONDS": "600", "REFRESH_BACKOFF_MAX_SECONDS": "300"},
        )


def test_a_connection_past_its_reauth_due_date_is_reauth_required_without_asking_the_bank(
    refresher, repo, bank, clock, publisher
):
    # Given a connection whose strong authentication's validity ends before its next refresh
    connection = seed(repo, clock, "old", reauth_in=timedelta(minutes=3))
    clock.advance(minutes=4)

    # When the refresher runs
    summary = run(refresher)

    # Then it is REAUTH_REQUIRED for that reason, the bank was not asked, and the fintech was told once
    assert summary.reauth_required == 1 and bank.refreshed() == []
    stored = repo.find("user-old", "13807")
    assert (stored.status, stored.status_reason) == (ConnectionStatus.REAUTH_REQUIRED, StatusReason.REAUTH_DUE)
    assert not stored.has_tokens
    (event,) = publisher.events
    assert event.detail_type.value == REAUTH and event.detail.connection_id == connection.connection_id
