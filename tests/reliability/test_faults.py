"""Reliability suite, faults (issue #8): what the caller gets when the bank, DynamoDB or KMS fails, through the real
handlers (``functions/*/app.py`` with ``events/`` payloads), moto, and the offline 89C3 sandbox over HTTPS + mTLS.

Every scenario asserts three things: the documented status and problem ``code`` (``docs/openapi.json``), the
connection record afterwards (still there, tokens sealed with AES-GCM, none of the bank's tokens in plaintext, the
refresh token kept, no lease left behind), and that the next call after the fault is cleared works. Each checked
scenario adds one case to the ``faults`` line of the reliability summary.

Covered elsewhere and not repeated here: the status/code of accounts-list bank faults
(``tests/integration/test_account_queries.py::test_bank_faults_become_stable_codes``), an expired refresh token and
Julie's refused refresh on account queries (same file), the refresher's half-failing token endpoint, expired
refresh token and Julie (``tests/integration/test_refresher_journey.py``), a 503 and a closed port during the code
exchange (``tests/integration/test_connect_journey.py::test_bank_down_during_the_exchange``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from aisp import wiring
from aisp.aws.messaging import EVENT_SOURCE, EventBridgePublisher
from aisp.clock import epoch
from aisp.dal import DynamoConnectionRepository
from aisp.errors import TokenRefreshBatchError
from aisp.logic.refresh.scheduler import RefresherServices, RefreshPolicy
from aisp.models.connection import ConnectionStatus, TokenPair
from aisp.stet.gateway import StetBankGateway
from bench.sandbox_host import mint_grants
from functions.token_refresher import app as refresher_app
from tests.conftest import CONNECTIONS_TABLE, FakeLambdaContext
from tests.fakes import FakeClock
from tests.integration import conftest as integration_fixtures
from tests.integration.journey import (
    BANK,
    accounts,
    at_path,
    call_back,
    connect_marc,
    consent,
    event,
    login_at_bank,
    redirect_query,
    start,
)
from tests.reliability.faults_support import (
    SUITE,
    Bank,
    assert_intact,
    assert_sealed,
    aws_fault,
    bank_timeout,
    issued_tokens,
    plain,
    problem,
    works_at_the_bank,
)
from tests.reliability.tally import record
from tests.sandbox.helpers import MARC, MARC_ACCOUNTS

pytestmark = pytest.mark.integration

# The integration suite's fixtures: the offline sandbox (one per module), its admin API reset around each test, and
# the deployed wiring pointed at it (tests/integration/conftest.py).
sandbox = integration_fixtures.sandbox
admin = integration_fixtures.admin
gateway = integration_fixtures.gateway

USER = "user-marc"
# Timeouts: the gateway waits SHORT_TIMEOUT for a bank answer; a dead call hangs HANG (sandbox side) > SHORT_TIMEOUT.
SHORT_TIMEOUT = 0.8
HANG = 2.0


@pytest.fixture
def bank(sandbox, admin) -> Bank:
    return Bank(admin, sandbox.admin_url)


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch):
    """The bank client's GET backoff (0.25-1.5 s between attempts) and the lease wait (5 s), made short."""
    monkeypatch.setattr("aisp.stet.client._BACKOFF_BASE", 0.01)
    monkeypatch.setattr("aisp.logic.refresh.on_demand.LEASE_WAIT_SECONDS", 0.5)
    monkeypatch.setattr("aisp.logic.refresh.on_demand.LEASE_POLL_SECONDS", 0.05)


@pytest.fixture
def marc(gateway, load_event, lambda_context) -> TokenPair:
    """Marc connected through the bank's screens; his decrypted token pair as the table holds it."""
    connect_marc(load_event, lambda_context)
    _, tokens = gateway.connections.get_with_tokens(USER, BANK)
    assert tokens is not None
    return tokens


# ----------------------------------------------------------------------------------------------------------------
# The account and consent routes
# ----------------------------------------------------------------------------------------------------------------


def _route(load_event, name: str) -> dict[str, Any]:
    """The events/ payload of a route, for Marc's first account."""
    account = MARC_ACCOUNTS[0]
    if name == "transactions":
        loaded = event(load_event, "accounts/get_transactions.json")
        loaded.pop("queryStringParameters", None)
        loaded["rawQueryString"] = ""
        return at_path(
            loaded, f"/v1/connections/{BANK}/accounts/{account}/transactions", bank_code=BANK, account_id=account
        )
    files = {
        "accounts": "accounts/list_accounts.json",
        "balances": "accounts/get_balances.json",
        "identity": "accounts/get_identity.json",
        "beneficiaries": "accounts/get_trusted_beneficiaries.json",
        "all_accounts": "accounts/list_all_accounts.json",
        "consent": "consents/submit_consent.json",
    }
    return event(load_event, files[name])


def _call(load_event, lambda_context, name: str, **query: str) -> dict[str, Any]:
    loaded = _route(load_event, name)
    if query:
        loaded["queryStringParameters"] = query
        loaded["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    handler = consent if name == "consent" else accounts
    response, _ = handler(loaded, lambda_context)
    return response


@contextmanager
def scenario(name: str) -> Iterator[None]:
    """Name the table row an assertion failed in."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"[{name}] {exc}") from exc


def _ok(response: dict[str, Any]) -> Any:
    assert response["statusCode"] == 200, response.get("body")
    return json.loads(response["body"])


BANK_FAULTS = [
    # (route, sandbox rule, status, code, Retry-After)
    ("balances", {"fault": "500"}, 503, "bank_unavailable", None),
    ("transactions", {"fault": "503"}, 503, "bank_unavailable", None),
    ("identity", {"fault": "timeout", "hang_seconds": HANG}, 503, "bank_unavailable", None),
    ("beneficiaries", {"fault": "429", "retry_after": 30}, 429, "bank_rate_limited", "30"),
    ("balances", {"fault": "tmrq"}, 429, "bank_rate_limited", "60"),
    ("consent", {"fault": "500"}, 503, "bank_unavailable", None),
    ("consent", {"fault": "503"}, 503, "bank_unavailable", None),
    ("consent", {"fault": "timeout", "hang_seconds": HANG}, 503, "bank_unavailable", None),
    ("consent", {"fault": "429", "retry_after": 120}, 429, "bank_rate_limited", "120"),
    ("consent", {"fault": "tmrq"}, 429, "bank_rate_limited", "60"),
]


def test_a_failing_bank_api_is_a_documented_error_and_the_tokens_survive(
    gateway,
    aws,
    bank,
    marc,
    monkeypatch,
    load_event,
    lambda_context,
):
    for route, rule, status, code, retry_after in BANK_FAULTS:
        with scenario(f"{route} {rule}"):
            # Given Marc connected, and the bank's AISP API failing every call (GETs are retried twice, PUTs never)
            before = gateway.connections.find(USER, BANK)
            bank.fault(scope="aisp", bank=BANK, **rule)

            # When his app calls the route
            with bank_timeout(monkeypatch, SHORT_TIMEOUT):
                response = _call(load_event, lambda_context, route)

            # Then the documented problem, with the bank's Retry-After (or 60 s), no bank text
            problem(response, status, code)
            assert response["headers"].get("Retry-After") == retry_after
            assert "INTE" not in response["body"] and "Limite" not in response["body"]
            # And the connection is untouched: same version and sealed tokens, no consent recorded for a failed PUT
            assert gateway.connections.find(USER, BANK) == before
            assert_intact(aws, gateway.connections, USER, marc)

            # When the bank is back, the same call works with the same tokens
            bank.clear()
            _ok(_call(load_event, lambda_context, route))
            assert gateway.connections.get_with_tokens(USER, BANK)[1] == marc
        record(SUITE)


TOKEN_FAULTS = [
    # (sandbox rule on the token endpoint, status, code, Retry-After)
    ({"fault": "500"}, 503, "bank_unavailable", None),
    ({"fault": "503"}, 503, "bank_unavailable", None),
    ({"fault": "timeout", "hang_seconds": HANG}, 503, "bank_unavailable", None),
    ({"fault": "429", "retry_after": 90}, 429, "bank_rate_limited", "90"),
    ({"fault": "tmrq"}, 429, "bank_rate_limited", "60"),
]


def test_a_failing_token_endpoint_during_an_on_demand_refresh_keeps_the_refresh_token(
    gateway,
    aws,
    bank,
    marc,
    monkeypatch,
    load_event,
    lambda_context,
):
    tokens = marc
    for rule, status, code, retry_after in TOKEN_FAULTS:
        with scenario(f"token {rule}"):
            # Given the bank expired Marc's access token early, and its token endpoint fails
            bank.call("POST", "expire-access-tokens", {"bank": BANK, "psu": MARC})
            bank.fault(scope="token", bank=BANK, **rule)

            # When his app reads his balances (401 from the bank → one refresh, which fails)
            with bank_timeout(monkeypatch, SHORT_TIMEOUT):
                response = _call(load_event, lambda_context, "balances")

            # Then the documented problem, and the record keeps its refresh token, sealed, with the lease released
            problem(response, status, code)
            assert response["headers"].get("Retry-After") == retry_after
            assert_intact(aws, gateway.connections, USER, tokens)

            # When the token endpoint is back, the next call refreshes and is served
            bank.clear()
            _ok(_call(load_event, lambda_context, "balances"))
            refreshed = assert_intact(aws, gateway.connections, USER, tokens)
            assert refreshed.access_token != tokens.access_token and works_at_the_bank(refreshed)
            tokens = refreshed
        record(SUITE)


def test_tokens_revoked_at_the_bank_are_reauth_required_then_a_new_login_works(
    gateway,
    aws,
    bank,
    marc,
    load_event,
    lambda_context,
):
    # Given Marc's tokens revoked at the bank (by him, or by the bank)
    assert bank.call("POST", "revoke", {"bank": BANK, "psu": MARC}) == {"revoked": 1}

    # When his app reads his accounts: the access token is refused, and so is the refresh token
    problem(_call(load_event, lambda_context, "accounts"), 409, "reauth_required")

    # Then the connection says so, its dead tokens are forgotten (not left in any form), its event is pending
    item = assert_sealed(aws, USER, plain(marc))
    assert item["status"]["S"] == ConnectionStatus.REAUTH_REQUIRED.value and "tokens" not in item
    assert item["reauth_notice"]["S"] == "PENDING"  # published by the next refresher run
    problem(_call(load_event, lambda_context, "accounts"), 409, "reauth_required")  # no bank call to fail again

    # When Marc logs in again, the same connection is ACTIVE and served
    connect_marc(load_event, lambda_context)
    _ok(_call(load_event, lambda_context, "accounts"))
    connection, tokens = gateway.connections.get_with_tokens(USER, BANK)
    assert connection.status is ConnectionStatus.ACTIVE and connection.connection_id == item["connection_id"]["S"]
    assert_sealed(aws, USER, [*plain(marc), *plain(tokens)])
    record(SUITE)


# ----------------------------------------------------------------------------------------------------------------
# A slow page in the middle of a pagination
# ----------------------------------------------------------------------------------------------------------------


def test_a_page_slower_than_the_timeout_fails_and_its_cursor_still_opens_it(
    gateway,
    aws,
    bank,
    marc,
    monkeypatch,
    load_event,
    lambda_context,
):
    # Given Marc's first page of transactions and its cursor to page 2
    first = _ok(_call(load_event, lambda_context, "transactions"))
    cursor = first["next_cursor"]
    assert cursor and first["transactions"]

    with bank_timeout(monkeypatch, SHORT_TIMEOUT):
        # When page 2 takes longer than the gateway waits (every attempt), while pages 1 and 3 are fast
        bank.fault(scope="aisp", bank=BANK, fault="slow", page="2", hang_seconds=HANG)
        response = _call(load_event, lambda_context, "transactions", cursor=cursor)
        # Then the documented timeout answer
        problem(response, 503, "bank_unavailable")
        assert bank.faults()[0]["fired"] == 3  # the first try and the client's two retries
        record(SUITE)

        # When page 2 is slow but within the timeout, the same cursor serves it
        bank.clear()
        bank.fault(scope="aisp", bank=BANK, fault="slow", page="2", hang_seconds=0.1)
        second = _ok(_call(load_event, lambda_context, "transactions", cursor=cursor))
        assert bank.faults()[0]["fired"] == 1
    record(SUITE)

    # And the pagination goes on from there as if nothing happened: page 2 is the one after page 1
    bank.clear()
    assert second["transactions"] and second["next_cursor"]
    assert {t["id"] for t in second["transactions"]}.isdisjoint(t["id"] for t in first["transactions"])
    third = _ok(_call(load_event, lambda_context, "transactions", cursor=second["next_cursor"]))
    assert third["transactions"]
    assert_intact(aws, gateway.connections, USER, marc)


def test_a_dead_page_in_an_all_pages_read_is_a_documented_error_then_the_read_completes(
    gateway,
    aws,
    bank,
    marc,
    monkeypatch,
    load_event,
    lambda_context,
):
    # Given every page of Marc's history read at once while the bank is healthy
    complete = _ok(_call(load_event, lambda_context, "transactions", all="true"))
    assert complete["next_cursor"] is None

    # When page 3 never answers
    with bank_timeout(monkeypatch, SHORT_TIMEOUT):
        bank.fault(scope="aisp", bank=BANK, fault="timeout", page="3", hang_seconds=HANG)
        response = _call(load_event, lambda_context, "transactions", all="true")

    # Then the documented timeout answer (not a truncated list passed off as complete), tokens intact
    problem(response, 503, "bank_unavailable")
    assert_intact(aws, gateway.connections, USER, marc)

    # And once it answers again, the same read is complete
    bank.clear()
    assert _ok(_call(load_event, lambda_context, "transactions", all="true")) == complete
    record(SUITE)


# ----------------------------------------------------------------------------------------------------------------
# DynamoDB: throttling (after botocore's retries), lost conditions, a lease held elsewhere
# ----------------------------------------------------------------------------------------------------------------


def _writes(*attributes: str) -> Callable[[dict[str, Any]], bool]:
    """An UpdateItem predicate: the update names every one of ``attributes`` (PynamoDB's ``#n`` placeholders)."""

    def matches(params: dict[str, Any]) -> bool:
        names = set(params.get("ExpressionAttributeNames", {}).values())
        return all(attribute in names for attribute in attributes)

    return matches


def _bump_version(aws) -> Callable[[str, dict[str, Any]], None]:
    """A concurrent writer (say, a consent submitted from another device) bumps the version first."""

    def concurrent_write(_operation: str, params: dict[str, Any]) -> None:
        aws.dynamodb.update_item(
            TableName=CONNECTIONS_TABLE,
            Key=params["Key"],
            UpdateExpression="SET #v = #v + :one",
            ExpressionAttributeNames={"#v": "version"},
            ExpressionAttributeValues={":one": {"N": "1"}},
        )

    return concurrent_write


THROTTLED = "ProvisionedThroughputExceededException"

DYNAMODB_FAULTS = [
    # (name, route, access token expired at the bank first, fault, status, code)
    ("read throttled", "accounts", False, {"operations": ("GetItem",), "code": THROTTLED}, 503, "service_unavailable"),
    (
        "consent write throttled",
        "consent",
        False,
        {"operations": ("UpdateItem",), "code": "ThrottlingException", "when": _writes("consent")},
        503,
        "service_unavailable",
    ),
    (
        "consent write loses its condition every time",
        "consent",
        False,
        {"operations": ("UpdateItem",), "code": "ConditionalCheckFailedException", "when": _writes("consent")},
        409,
        "conflict",
    ),
    (
        "refresh lease write throttled",
        "balances",
        True,
        {"operations": ("UpdateItem",), "code": THROTTLED, "when": _writes("lease_owner", "lease_until")},
        503,
        "service_unavailable",
    ),
    (
        "refreshed tokens write throttled",
        "balances",
        True,
        {"operations": ("UpdateItem",), "code": THROTTLED, "when": _writes("tokens")},
        503,
        "service_unavailable",
    ),
]


def test_dynamodb_failures_are_retryable_errors_and_nothing_is_half_written(
    gateway,
    aws,
    bank,
    marc,
    load_event,
    lambda_context,
):
    tokens = marc
    for name, route, expire_access, fault, status, code in DYNAMODB_FAULTS:
        with scenario(name):
            before = gateway.connections.find(USER, BANK)
            if expire_access:
                bank.call("POST", "expire-access-tokens", {"bank": BANK, "psu": MARC})

            # When DynamoDB fails that call (all of botocore's retries spent)
            options = {option: value for option, value in fault.items() if option != "operations"}
            with aws_fault(*fault["operations"], table=CONNECTIONS_TABLE, **options) as injected:
                response = _call(load_event, lambda_context, route)
            assert injected.fired >= 1

            # Then a documented, retryable answer; the record as it was (no consent, no token half-written)
            problem(response, status, code)
            after = gateway.connections.find(USER, BANK)
            assert (after.version, after.consent) == (before.version, before.consent)
            assert_intact(aws, gateway.connections, USER, tokens)

            # And the same call works once DynamoDB does
            _ok(_call(load_event, lambda_context, route))
            tokens = assert_intact(aws, gateway.connections, USER, tokens)
            assert works_at_the_bank(tokens)
        record(SUITE)


def test_a_version_changed_during_the_token_save_keeps_the_new_token(
    gateway,
    aws,
    bank,
    marc,
    load_event,
    lambda_context,
):
    # Given Marc's access token expired at the bank, and another writer bumping the version just before our save
    bank.call("POST", "expire-access-tokens", {"bank": BANK, "psu": MARC})
    version = gateway.connections.find(USER, BANK).version

    # When his app reads his balances (refresh, then a save whose condition really fails once)
    with aws_fault(
        "UpdateItem", code="", times=1, table=CONNECTIONS_TABLE, when=_writes("tokens"), before=_bump_version(aws)
    ):
        response = _call(load_event, lambda_context, "balances")

    # Then served: the new token, which the bank already switched to, was written on the new version, not dropped
    _ok(response)
    connection, _ = gateway.connections.get_with_tokens(USER, BANK)
    assert connection.version == version + 2
    tokens = assert_intact(aws, gateway.connections, USER, marc)
    assert tokens.access_token != marc.access_token and works_at_the_bank(tokens)
    record(SUITE)


def test_a_lease_held_by_another_refresher_is_a_retryable_conflict(
    gateway,
    aws,
    bank,
    marc,
    load_event,
    lambda_context,
):
    # Given the refresher holding Marc's lease (its bank call in flight) and his access token expired at the bank
    key = {"user_id": {"S": USER}, "bank_code": {"S": BANK}}
    until = int((datetime.now(UTC) + timedelta(minutes=1)).timestamp())
    aws.dynamodb.update_item(
        TableName=CONNECTIONS_TABLE,
        Key=key,
        UpdateExpression="SET lease_owner = :owner, lease_until = :until",
        ExpressionAttributeValues={":owner": {"S": "refresher:run-x:1"}, ":until": {"N": str(until)}},
    )
    bank.call("POST", "expire-access-tokens", {"bank": BANK, "psu": MARC})

    # When his app reads his balances and the holder does not store new tokens in time
    response = _call(load_event, lambda_context, "balances")

    # Then a retryable 409, the record untouched, the other refresher's lease respected
    problem(response, 409, "conflict")
    assert response["headers"].get("Retry-After") is not None
    item = assert_sealed(aws, USER, plain(marc))
    assert item["lease_owner"]["S"] == "refresher:run-x:1"

    # When the holder lets go (its bank call failed), the next call refreshes and is served
    aws.dynamodb.update_item(TableName=CONNECTIONS_TABLE, Key=key, UpdateExpression="REMOVE lease_owner, lease_until")
    _ok(_call(load_event, lambda_context, "balances"))
    assert works_at_the_bank(assert_intact(aws, gateway.connections, USER, marc))
    record(SUITE)


# ----------------------------------------------------------------------------------------------------------------
# KMS
# ----------------------------------------------------------------------------------------------------------------


def _cold_container(gateway) -> None:
    """A new Lambda container: no data key generated or unwrapped yet (the next seal/open calls KMS)."""
    wiring.token_cipher.reset()  # the repository asks the factory for its cipher on each seal or open


KMS_DECRYPT_FAULTS = ["KMSInternalException", "DisabledException", "AccessDeniedException", "ThrottlingException"]


def test_kms_failing_to_unwrap_the_data_key_is_a_retryable_error(
    gateway,
    aws,
    bank,
    marc,
    load_event,
    lambda_context,
):
    for code in KMS_DECRYPT_FAULTS:
        with scenario(f"Decrypt {code}"):
            # Given a new container, and KMS refusing to unwrap the data key
            _cold_container(gateway)
            with aws_fault("Decrypt", code=code) as injected:
                response = _call(load_event, lambda_context, "accounts")
            assert injected.fired == 1

            # Then a documented 503, the record as it was
            problem(response, 503, "service_unavailable")
            assert_intact(aws, gateway.connections, USER, marc)

            # And the next call, KMS back, is served
            _ok(_call(load_event, lambda_context, "accounts"))
        record(SUITE)


def test_kms_failing_to_seal_refreshed_tokens_keeps_the_refresh_token_and_frees_the_lease(
    gateway,
    aws,
    bank,
    marc,
    load_event,
    lambda_context,
):
    # Given a new container, Marc's access token expired at the bank, and KMS unable to generate a data key
    _cold_container(gateway)
    bank.call("POST", "expire-access-tokens", {"bank": BANK, "psu": MARC})
    with aws_fault("GenerateDataKey", code="KMSInternalException") as injected:
        response = _call(load_event, lambda_context, "balances")
    assert injected.fired == 1

    # Then 503; nothing plaintext stored, the refresh token kept, the lease released
    problem(response, 503, "service_unavailable")
    assert_intact(aws, gateway.connections, USER, marc)

    # And the next call refreshes again and is served
    _ok(_call(load_event, lambda_context, "balances"))
    assert works_at_the_bank(assert_intact(aws, gateway.connections, USER, marc))
    record(SUITE)


def test_kms_failing_during_the_callback_stores_no_token_and_a_new_login_works(
    gateway,
    aws,
    sandbox,
    bank,
    load_event,
    lambda_context,
):
    # Given Marc back from the bank's screens with a code, in a new container where KMS cannot generate a data key
    started = start(load_event, lambda_context)
    redirect = login_at_bank(started["authorization_url"])
    _cold_container(gateway)
    with aws_fault("GenerateDataKey", code="DisabledException") as injected:
        response = call_back(load_event, lambda_context, code=redirect["code"], state=redirect["state"])
    assert injected.fired == 1

    # Then his app is told the exchange failed, and the record holds no token in any form
    assert redirect_query(response)["error"] == "token_exchange_failed"
    item = assert_sealed(aws, USER, [])
    assert item["status"]["S"] == ConnectionStatus.FAILED.value
    assert item["status_reason"]["S"] == "token_exchange_failed"
    assert not {"tokens", "pending_tokens"} & set(item)
    grant = sandbox.core.stores[BANK].codes[redirect["code"]].grant
    assert grant is not None  # the bank did issue a pair...
    assert_sealed(aws, USER, [grant.access_token, grant.refresh_token])  # ...which is nowhere in the table
    # ...and which was given back: nobody holds live tokens the gateway could not keep
    assert grant.revoked and issued_tokens(sandbox, MARC) == []

    # And logging in again connects him
    connect_marc(load_event, lambda_context)
    _ok(_call(load_event, lambda_context, "accounts"))
    record(SUITE)


# ----------------------------------------------------------------------------------------------------------------
# The token refresher (functions/token_refresher, the scheduled event)
# ----------------------------------------------------------------------------------------------------------------

BUS = "aisp-lifecycle-faults"
MARGIN = RefreshPolicy().margin


class LongContext(FakeLambdaContext):
    """A scheduled invocation with most of its 300 s ahead."""

    def get_remaining_time_in_millis(self) -> int:
        return 280_000


@pytest.fixture
def refresher(gateway, aws, monkeypatch) -> Iterator[tuple[RefresherServices, FakeClock, Callable[[], list[Any]]]]:
    """The refresher's wiring (sandbox, moto bus copied to an SQS inbox), its clock, and the inbox reader."""
    sqs, events = boto3.client("sqs"), boto3.client("events")
    queue = sqs.create_queue(QueueName="faults-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.create_event_bus(Name=BUS)
    events.put_rule(Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": [EVENT_SOURCE]}))
    events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "inbox", "Arn": arn}])
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    monkeypatch.setenv("REFRESH_TIME_RESERVE_SECONDS", "5")
    wiring.reset()

    def inbox() -> list[Any]:
        bodies = []
        while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                bodies.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return bodies

    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    services = RefresherServices(
        registry=wiring.registry(),
        connections=DynamoConnectionRepository(cipher=wiring.token_cipher),
        bank=StetBankGateway(wiring.bank_clients),
        events=EventBridgePublisher(BUS),
        clock=clock,
    )
    yield services, clock, inbox
    wiring.reset()


def _seed(sandbox, services: RefresherServices, clock: FakeClock, user: str) -> TokenPair:
    """An ACTIVE connection due for refresh, holding a pair the sandbox minted for Marc."""
    ((access, refresh),) = mint_grants(sandbox.core, bank_code=BANK, psu_id=MARC, count=1)
    tokens = TokenPair(access_token=SecretStr(access), refresh_token=SecretStr(refresh))
    services.connections.activate(
        user_id=user,
        bank_code=BANK,
        connection_id=f"cn_{user}",
        expected_version=None,
        tokens=tokens,
        access_expires_at=clock.now() + timedelta(minutes=5),
        reauth_due_at=clock.now() + timedelta(days=90),
        now=clock.now(),
    )
    return tokens


def _run(load_event, services: RefresherServices) -> dict[str, Any]:
    wiring.refresher_services.provide(services)
    result = refresher_app.lambda_handler(load_event("token_refresher/scheduled.json"), LongContext())
    (summary,) = result["runs"]
    return dict(summary)


REFRESHER_FAULTS = [
    # (sandbox rule on the token endpoint, the bank's Retry-After the next attempt must wait for)
    ({"fault": "500"}, None),
    ({"fault": "503"}, None),
    ({"fault": "timeout", "hang_seconds": HANG}, None),
    ({"fault": "429", "retry_after": 1800}, 1800),
    ({"fault": "tmrq"}, None),
]


def test_the_refresher_keeps_working_tokens_through_token_endpoint_outages(
    sandbox,
    aws,
    bank,
    refresher,
    monkeypatch,
    load_event,
):
    services, clock, inbox = refresher
    for index, (rule, retry_after) in enumerate(REFRESHER_FAULTS):
        user = f"refresh-{index}"
        with scenario(f"refresher {rule}"):
            # Given a due connection, and the bank's token endpoint failing
            tokens = _seed(sandbox, services, clock, user)
            bank.fault(scope="token", bank=BANK, **rule)

            # When the scheduled run comes: counted as transient, not raised
            with bank_timeout(monkeypatch, SHORT_TIMEOUT):
                summary = _run(load_event, services)
            assert (summary["transient_failures"], summary["refreshed"], summary["failed"]) == (1, 0, 0)

            # Then the old tokens are kept (sealed, still working), the failure counted, the next attempt backed off:
            # never before the bank's Retry-After, never after the access token in use expires
            assert_intact(aws, services.connections, user, tokens)
            assert works_at_the_bank(tokens)
            item = aws.raw_connection(user, BANK)
            assert item["refresh_failures"]["N"] == "1"
            due_at = int(item["refresh_due_at"]["N"])
            now = clock.now()
            if retry_after is not None:
                assert due_at == epoch(now + timedelta(seconds=retry_after) + MARGIN)
            else:
                assert (
                    epoch(now + timedelta(minutes=1) + MARGIN) <= due_at <= epoch(now + timedelta(minutes=5) + MARGIN)
                )
            assert _run(load_event, services)["attempted"] == 0  # not before its time

            # When the bank is back and the next attempt is due, the run refreshes it
            bank.clear()
            clock.current = datetime.fromtimestamp(due_at, UTC) - MARGIN
            assert _run(load_event, services)["refreshed"] == 1
            refreshed = assert_intact(aws, services.connections, user, tokens)
            assert refreshed.access_token != tokens.access_token and works_at_the_bank(refreshed)
            assert "refresh_failures" not in aws.raw_connection(user, BANK)
        record(SUITE)
    assert inbox() == []  # transient failures announce nothing


def test_the_refresher_turns_revoked_tokens_into_one_reauth_event(aws, bank, marc, refresher, load_event):
    # Given Marc connected through the bank's screens, his tokens then revoked at the bank, his refresh due
    services, clock, inbox = refresher
    tokens = marc
    assert bank.call("POST", "revoke", {"bank": BANK, "psu": MARC}) == {"revoked": 1}
    clock.advance(minutes=55)

    first = _run(load_event, services)
    clock.advance(hours=2)
    second = _run(load_event, services)

    # REAUTH_REQUIRED, its dead tokens forgotten, out of the index, one event that carries no token
    assert (first["reauth_required"], second["attempted"]) == (1, 0)
    item = assert_sealed(aws, USER, plain(tokens))
    assert item["status"]["S"] == ConnectionStatus.REAUTH_REQUIRED.value and "tokens" not in item
    assert "refresh_due_at" not in item
    (published,) = inbox()
    assert published["detail-type"] == "ConnectionReauthRequired"
    assert not any(secret in json.dumps(published) for secret in plain(tokens))
    record(SUITE)


def test_the_refresher_survives_dynamodb_and_kms_failures_and_the_next_run_refreshes(
    sandbox,
    aws,
    bank,
    refresher,
    load_event,
):
    services, clock, _ = refresher
    failures: list[tuple[str, dict[str, Any]]] = [
        (
            "lease write throttled",
            {"operations": ("UpdateItem",), "code": THROTTLED, "when": _writes("lease_owner", "lease_until")},
        ),
        ("data key unwrap failed", {"operations": ("Decrypt",), "code": "KMSInternalException"}),
        (
            "refreshed tokens write throttled",
            {"operations": ("UpdateItem",), "code": THROTTLED, "when": _writes("tokens")},
        ),
    ]
    for index, (name, fault) in enumerate(failures):
        user = f"refresh-aws-{index}"
        with scenario(name):
            tokens = _seed(sandbox, services, clock, user)
            wiring.token_cipher.reset()  # a new container: nothing unwrapped yet

            # When the run's DynamoDB or KMS call fails: the other connections go on, the run fails at the end
            options = {option: value for option, value in fault.items() if option != "operations"}
            with (
                aws_fault(*fault["operations"], **options) as injected,
                pytest.raises(TokenRefreshBatchError) as raised,
            ):
                _run(load_event, services)
            assert injected.fired >= 1 and len(raised.value.failed_ids) == 1

            # Then the connection keeps a working refresh token, sealed, lease released, and is still due
            assert_intact(aws, services.connections, user, tokens)
            assert "refresh_due_at" in aws.raw_connection(user, BANK)

            # And the next run refreshes it
            clock.advance(minutes=6)
            assert _run(load_event, services)["refreshed"] == 1
            assert works_at_the_bank(assert_intact(aws, services.connections, user, tokens))
        record(SUITE)
