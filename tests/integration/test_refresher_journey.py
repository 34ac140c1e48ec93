"""The token refresher against the offline 89C3 sandbox over real HTTPS with mTLS, with moto (DynamoDB, KMS,
Secrets Manager, EventBridge → SQS to read the lifecycle events back).

Connections are seeded through the repository with token pairs the sandbox minted in bulk (``bench.sandbox_host``:
its login screens allow one pair per persona). Token calls are counted at the sandbox itself: a fault rule that never
fires (``ratio: 0``) counts every call to the token endpoint in ``GET /_admin/state``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from aisp import wiring
from aisp.aws.messaging import EventBridgePublisher
from aisp.dal import DynamoConnectionRepository
from aisp.dal.tables import ConnectionRecord
from aisp.errors import BankTokenInvalidError
from aisp.logic.refresh.on_demand import usable_tokens
from aisp.logic.refresh.scheduler import RefresherServices, RefreshPolicy, refresh_due_connections
from aisp.logic.services import ConnectionServices
from aisp.models.connection import ConnectionStatus, TokenPair
from aisp.stet.client import PsuContext
from aisp.stet.gateway import StetBankGateway
from bench.sandbox_host import mint_grants
from functions.token_refresher import app
from sandbox.oauth import issue_code
from sandbox.server import RunningSandbox, SandboxConfig, start_sandbox
from tests.conftest import SECRET_NAME, FakeLambdaContext, clear_gateway_caches
from tests.fakes import FakeClock, serialize_dynamodb_writes
from tests.integration.journey import bus_inbox
from tests.sandbox.helpers import JULIE, MARC

pytestmark = pytest.mark.integration

BANK = "13807"
BUS = "aisp-lifecycle-it"
REDIRECT_URI = "https://gateway.example/oauth/callback"
PSU = PsuContext(ip_address="203.0.113.7")  # attended calls: the sandbox's daily quota does not apply
POLICY = RefreshPolicy(workers=16, time_reserve_seconds=5)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    config = SandboxConfig(
        port=0, screens_port=0, certs_dir=tmp_path_factory.mktemp("sandbox-certs"), admin=True,
        redirect_uris=(REDIRECT_URI,),
    )  # fmt: skip
    with start_sandbox(config) as running:
        yield running


class Admin:
    """The sandbox's admin API, with a never-firing fault rule that counts token-endpoint calls."""

    def __init__(self, sandbox: RunningSandbox) -> None:
        self.url = sandbox.admin_url
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(sandbox.ca_path)

    def call(self, method: str, name: str, body: dict[str, Any] | None = None) -> requests.Response:
        response = self.session.request(method, f"{self.url}/{name}", json=body, timeout=5)
        assert response.status_code < 300, response.text
        return response

    def reset(self) -> None:
        self.call("POST", "reset")
        self.call("POST", "faults", {"fault": "500", "scope": "token", "ratio": 0.0})  # counter only

    def token_calls(self) -> int:
        faults = self.call("GET", "state").json()["faults"]
        return max(rule["calls"] for rule in faults if rule["ratio"] == 0.0)


@pytest.fixture
def admin(sandbox: RunningSandbox) -> Iterator[Admin]:
    helper = Admin(sandbox)
    helper.reset()
    yield helper
    helper.call("POST", "reset")
    helper.session.close()


@pytest.fixture
def inbox(aws, monkeypatch) -> Callable[[], list[dict[str, Any]]]:  # noqa: ARG001 - moto
    """The fintech's bus (moto) with a rule copying every gateway event into an SQS queue; returns a reader."""
    received = bus_inbox(BUS, queue_name="lifecycle-inbox")
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    return received


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def wired(aws, sandbox: RunningSandbox, admin: Admin, inbox, clock, monkeypatch) -> Iterator[RefresherServices]:
    """The deployed wiring pointed at the sandbox (BANK_ENVIRONMENT=local) and at the moto bus."""
    monkeypatch.setenv("BANK_ENVIRONMENT", "local")
    monkeypatch.setenv("BANK_BASE_URL_TEMPLATE", sandbox.api_origin + "/{bank_code}")
    monkeypatch.setenv("BANK_AUTHORIZE_URL_TEMPLATE", sandbox.screens_origin + "/{bank_code}")
    monkeypatch.setenv("BANK_CA_BUNDLE", str(sandbox.ca_path))
    monkeypatch.setenv("BANK_TIMEOUT_SECONDS", "5")
    monkeypatch.setenv("REFRESH_TIME_RESERVE_SECONDS", "5")
    aws.secrets.create_secret(Name=SECRET_NAME, SecretString=json.dumps(sandbox.credentials))
    clear_gateway_caches()
    wiring.reset()
    yield RefresherServices(
        registry=wiring.registry(),
        connections=DynamoConnectionRepository(cipher=wiring.token_cipher),
        bank=StetBankGateway(wiring.bank_clients),
        events=EventBridgePublisher(BUS),
        clock=clock,
    )
    wiring.reset()
    clear_gateway_caches()


@dataclass
class LongContext(FakeLambdaContext):
    """A scheduled invocation with most of its 300 s ahead."""

    def get_remaining_time_in_millis(self) -> int:
        return 280_000


def seed(sandbox: RunningSandbox, clock: FakeClock, count: int, *, prefix: str = "u", psu: str = MARC, **lifetimes):
    """``count`` ACTIVE connections holding freshly minted sandbox tokens; returns their user ids."""
    expires_in = lifetimes.get("expires_in", timedelta(minutes=5))
    reauth_in = lifetimes.get("reauth_in", timedelta(days=90))
    repo = DynamoConnectionRepository(cipher=wiring.token_cipher)
    users = []
    for index, (access, refresh) in enumerate(mint_grants(sandbox.core, bank_code=BANK, psu_id=psu, count=count)):
        user = f"{prefix}{index:03d}"
        store(repo, clock, user, access, refresh, expires_in=expires_in, reauth_in=reauth_in)
        users.append(user)
    return users


def store(repo, clock, user, access, refresh, *, expires_in, reauth_in):
    repo.activate(
        user_id=user,
        bank_code=BANK,
        connection_id=f"cn_{user}",
        expected_version=None,
        tokens=TokenPair(access_token=SecretStr(access), refresh_token=SecretStr(refresh)),
        access_expires_at=clock.now() + expires_in,
        reauth_due_at=clock.now() + reauth_in,
        now=clock.now(),
    )


def run(services, run_id: str = "run-1", policy: RefreshPolicy = POLICY):
    return refresh_due_connections(remaining_ms=lambda: 280_000, run_id=run_id, services=services, policy=policy)


def works_at_the_bank(user: str) -> bool:
    """The stored access token reads Marc's accounts at the sandbox (attended call, signed, mTLS)."""
    _, tokens = DynamoConnectionRepository(cipher=wiring.token_cipher).get_with_tokens(user, BANK)
    return bool(wiring.bank_clients().get(BANK).get_accounts(tokens.access_token.get_secret_value(), PSU).accounts)


# ----------------------------------------------------------------------------------------------------------------


def test_due_connections_are_refreshed_at_the_bank_and_the_others_untouched(wired, sandbox, admin, clock):
    # Given six connections whose access token expires within the margin and four expiring in 40 minutes
    due = seed(sandbox, clock, 6, prefix="due")
    later = seed(sandbox, clock, 4, prefix="later", expires_in=timedelta(minutes=40))
    before = {
        user: DynamoConnectionRepository(cipher=wiring.token_cipher).get_with_tokens(user, BANK) for user in due + later
    }

    # When the refresher runs
    summary = run(wired)

    # Then the bank's token endpoint was called once per due connection, and each now holds a working new token
    assert (summary.refreshed, summary.failed, summary.transient_failures) == (6, 0, 0)
    assert admin.token_calls() == 6
    for user in due:
        connection, tokens = DynamoConnectionRepository(cipher=wiring.token_cipher).get_with_tokens(user, BANK)
        assert connection.version == before[user][0].version + 1
        assert tokens.access_token != before[user][1].access_token
        assert tokens.refresh_token == before[user][1].refresh_token  # BPCE does not rotate it
        assert works_at_the_bank(user)
        with pytest.raises(BankTokenInvalidError):  # the bank revoked the previous access token
            wiring.bank_clients().get(BANK).get_accounts(before[user][1].access_token.get_secret_value(), PSU)
    # And the others were not touched, their tokens still working
    for user in later:
        assert DynamoConnectionRepository(cipher=wiring.token_cipher).get_with_tokens(user, BANK) == before[user]
        assert works_at_the_bank(user)


def test_an_expired_refresh_token_means_reauth_required_and_exactly_one_event(wired, sandbox, admin, clock, inbox):
    # Given Marc connected through a real code exchange (the sandbox's one pair for him), and his refresh token
    # expired at the bank
    core = sandbox.core
    code = issue_code(core, core.stores[BANK], client_id=core.tpp.client_id, redirect_uri=REDIRECT_URI, psu_id=MARC)
    issued = StetBankGateway(wiring.bank_clients).exchange_code(BANK, code=code, redirect_uri=REDIRECT_URI)
    repo = DynamoConnectionRepository(cipher=wiring.token_cipher)
    store(
        repo,
        clock,
        "user-marc",
        issued.access_token.get_secret_value(),
        issued.refresh_token.get_secret_value(),
        expires_in=timedelta(minutes=3),
        reauth_in=timedelta(days=90),
    )
    assert admin.call("POST", "expire-refresh-tokens", {"bank": BANK, "psu": MARC}).json() == {"expired": 1}

    # When the refresher runs, and again two hours later
    first = run(wired)
    clock.advance(hours=2)
    second = run(wired, run_id="run-2")

    # Then Marc must log in again, the connection left the refresh index, and one event said so
    assert first.reauth_required == 1 and second.attempted == 0
    connection = repo.find("user-marc", BANK)
    assert connection.status is ConnectionStatus.REAUTH_REQUIRED and not connection.has_tokens
    assert admin.token_calls() == 2  # the exchange, then one refresh
    (event,) = inbox()
    assert event["detail-type"] == "ConnectionReauthRequired" and event["source"] == "aisp.gateway"
    assert event["detail"]["connection_id"] == "cn_user-marc" and event["detail"]["user_id"] == "user-marc"
    assert event["detail"]["bank_code"] == BANK and event["detail"]["reauth_due_at"]
    assert issued.refresh_token.get_secret_value() not in json.dumps(event)


def test_julie_revoked_access_at_her_bank_reauth_once(wired, sandbox, admin, clock, inbox):
    # Given Julie, whose every refresh the bank answers with invalid_grant
    (user,) = seed(sandbox, clock, 1, prefix="julie", psu=JULIE)

    run(wired)
    run(wired, run_id="run-2")

    assert (
        DynamoConnectionRepository(cipher=wiring.token_cipher).find(user, BANK).status
        is ConnectionStatus.REAUTH_REQUIRED
    )
    assert [event["detail-type"] for event in inbox()] == ["ConnectionReauthRequired"]
    assert admin.token_calls() == 1


def test_two_refreshers_racing_on_50_connections_refresh_each_exactly_once(wired, sandbox, admin, clock):
    # Given 50 due connections and two refreshers (say, a late run and the next one) starting together
    users = seed(sandbox, clock, 50, prefix="race")
    start = threading.Barrier(2)
    summaries: dict[str, Any] = {}

    def refresher(run_id: str) -> None:
        start.wait()
        summaries[run_id] = run(wired, run_id=run_id)

    # When both run at once (moto's conditional writes made atomic across threads, as DynamoDB's are)
    with serialize_dynamodb_writes():
        threads = [threading.Thread(target=refresher, args=(name,)) for name in ("run-a", "run-b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    # Then the bank refreshed each connection once, and the two runs split the work between them
    assert admin.token_calls() == 50
    assert sum(s.refreshed for s in summaries.values()) == 50
    # (both really competed: each found due keys, and every key it lost was left to the lease holder)
    assert all(s.attempted > 0 for s in summaries.values())
    assert sum(s.attempted for s in summaries.values()) == 50 + sum(s.skipped for s in summaries.values())
    assert sum(s.failed + s.transient_failures for s in summaries.values()) == 0
    # And every connection holds a working token, written once (version 1 → 2)
    for user in users:
        assert DynamoConnectionRepository(cipher=wiring.token_cipher).find(user, BANK).version == 2
        assert works_at_the_bank(user)


def test_a_bank_failing_half_the_calls_is_retried_by_a_later_run_and_nothing_is_lost(wired, sandbox, admin, clock):
    # Given 20 due connections and the bank answering 503 to every other token call
    users = seed(sandbox, clock, 20, prefix="flaky")
    admin.call("POST", "faults", {"fault": "503", "scope": "token", "every": 2})

    # When the refresher runs: half fail, counted but not raised, their tokens kept
    first = run(wired)
    assert (first.refreshed, first.transient_failures, first.failed) == (10, 10, 0)
    assert run(wired, run_id="run-early").attempted == 0  # not retried before their backoff

    # And once the bank is back and the backoff is over, a later run retries them
    admin.call("DELETE", "faults")
    admin.call("POST", "faults", {"fault": "500", "scope": "token", "ratio": 0.0})
    clock.advance(minutes=6)
    second = run(wired, run_id="run-2")

    # Then every connection was refreshed, none lost: each has a working token and its refresh token
    assert (second.refreshed, second.failed, second.transient_failures) == (10, 0, 0)
    for user in users:
        connection, tokens = DynamoConnectionRepository(cipher=wiring.token_cipher).get_with_tokens(user, BANK)
        assert connection.status is ConnectionStatus.ACTIVE and tokens.refresh_token is not None
        assert works_at_the_bank(user)


def test_expiring_events_are_sent_once_per_threshold_across_repeated_runs(wired, sandbox, admin, clock, inbox):
    # Given a connection whose strong authentication expires in 13 days
    (user,) = seed(sandbox, clock, 1, prefix="exp", reauth_in=timedelta(days=13, hours=12))
    reauth_due_at = DynamoConnectionRepository(cipher=wiring.token_cipher).find(user, BANK).reauth_due_at

    # When the refresher runs hourly-ish at these points (the connection comes due every time)
    thresholds = []
    for days_left in (13.5, 13.4, 7.5, 6.9, 6.8, 0.9, 0.8):
        clock.current = reauth_due_at - timedelta(days=days_left)
        run(wired, run_id=f"run-{days_left}")
        thresholds += [event["detail"]["threshold_days"] for event in inbox()]

    # Then each threshold was announced once, and the token was refreshed at every run
    assert thresholds == [14, 7, 1]
    assert admin.token_calls() == 7
    assert works_at_the_bank(user)


def test_a_refresher_holding_the_lease_excludes_an_on_demand_refresh(wired, sandbox, admin, clock):
    # Given an expired connection, and a bank whose token endpoint takes 0.8 s
    (user,) = seed(sandbox, clock, 1, prefix="lease", expires_in=timedelta(seconds=-1))
    admin.call("POST", "latency", {"ms": 800, "scope": "token"})
    services: ConnectionServices = wiring.connection_services()
    results: dict[str, Any] = {}

    def account_query() -> None:
        # Once the refresher holds the lease (its 0.8 s bank call then in flight), or has even finished on a thread
        # starved that long; never on a guess of how long the refresher takes to start on a busy machine.
        deadline = time.monotonic() + 10
        while True:
            record = ConnectionRecord.get(user, BANK, consistent_read=True)
            if record.lease_owner is not None or record.access_expires_at > clock.now():
                break
            assert time.monotonic() < deadline, "the refresher never took the lease"
            time.sleep(0.01)
        results["on_demand"] = usable_tokens(user, BANK, services=services)

    # When an account query needs the token while the refresher is refreshing it
    query = threading.Thread(target=account_query)
    query.start()
    summary = run(wired)
    query.join(timeout=10)

    # Then the bank was called once: the query waited for the refresher's tokens instead of refreshing again
    assert summary.refreshed == 1
    assert admin.token_calls() == 1
    connection, tokens = results["on_demand"]
    assert (connection, tokens) == DynamoConnectionRepository(cipher=wiring.token_cipher).get_with_tokens(user, BANK)
    assert works_at_the_bank(user)


def test_the_scheduled_event_runs_the_deployed_wiring(wired, sandbox, admin, clock, load_event, inbox):
    # Given two due connections (one 5 days from its reauth date) and the function's default wiring
    seed(sandbox, clock, 1, prefix="sched", reauth_in=timedelta(days=5))
    seed(sandbox, clock, 1, prefix="plain")

    # When EventBridge Scheduler invokes it with events/token_refresher/scheduled.json
    result = app.lambda_handler(load_event("token_refresher/scheduled.json"), LongContext())

    # Then both were refreshed at the sandbox and the expiring one announced
    assert result["runs"][0]["refreshed"] == 2 and admin.token_calls() == 2
    assert [(e["detail-type"], e["detail"]["threshold_days"]) for e in inbox()] == [("ConnectionExpiring", 7)]
