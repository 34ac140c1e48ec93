"""TokenRefresherFunction's handler with the events/ payloads: the schedule and a fan-out message, over moto
(DynamoDB, KMS, EventBridge → SQS to read the published events back) and a fake bank."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import boto3
import pytest
from pydantic import SecretStr

from aisp import wiring
from aisp.aws.messaging import EVENT_SOURCE, EventBridgePublisher
from aisp.clock import SystemClock
from aisp.dal import DynamoConnectionRepository, refresh_shard
from aisp.errors import BankProtocolError, ReauthRequiredError, TokenRefreshBatchError
from aisp.logic.refresh.scheduler import RefresherServices
from aisp.models.connection import ConnectionStatus, TokenPair
from functions.token_refresher import app
from tests.conftest import FakeLambdaContext
from tests.fakes import FakeBankGateway

BUS = "aisp-lifecycle-test"


@dataclass
class LongContext(FakeLambdaContext):
    """A scheduled invocation with its whole timeout ahead (300 s in the template)."""

    remaining_ms: int = 280_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class Bus:
    """The fintech's bus as moto runs it, with a rule copying every gateway event to a queue the test reads."""

    name: str
    inbox_url: str
    sqs: object

    def received(self) -> list[dict]:
        messages = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.inbox_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                messages.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.inbox_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def bus(aws, monkeypatch) -> Bus:
    sqs = boto3.client("sqs")
    events = boto3.client("events")
    inbox = sqs.create_queue(QueueName="lifecycle-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.create_event_bus(Name=BUS)
    events.put_rule(Name="all-gateway-events", EventBusName=BUS, EventPattern=json.dumps({"source": [EVENT_SOURCE]}))
    events.put_targets(Rule="all-gateway-events", EventBusName=BUS, Targets=[{"Id": "inbox", "Arn": arn}])
    # What the template gives TokenRefresherFunction (plus a short reserve: the fake context has 280 s left)
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    monkeypatch.setenv("REFRESH_MARGIN_MINUTES", "10")
    monkeypatch.setenv("REFRESH_WORKERS", "4")
    wiring.reset()
    yield Bus(name=BUS, inbox_url=inbox, sqs=sqs)
    wiring.reset()


@pytest.fixture
def bank():
    return FakeBankGateway()


@pytest.fixture
def services(bus, bank):
    """The deployed refresher's services with a fake bank, given to the handler in place of the built ones."""
    services = RefresherServices(
        registry=wiring.registry(),
        connections=DynamoConnectionRepository(cipher=wiring.token_cipher),
        bank=bank,
        events=EventBridgePublisher(BUS),
        clock=SystemClock(),
    )
    wiring.refresher_services.provide(services)
    return services


def seed(name: str, *, expires_in=timedelta(minutes=5), reauth_in=timedelta(days=90)):
    now = SystemClock().now()
    return DynamoConnectionRepository(cipher=wiring.token_cipher).activate(
        user_id=f"user-{name}",
        bank_code="13807",
        connection_id=f"cn_{name}",
        expected_version=None,
        tokens=TokenPair(access_token=SecretStr(f"access-{name}"), refresh_token=SecretStr(f"refresh-{name}")),
        access_expires_at=now + expires_in,
        reauth_due_at=now + reauth_in,
        now=now,
    )


def test_the_scheduled_event_refreshes_publishes_and_reports(load_event, services, bank, bus, capsys):
    # Given two due connections, one of them 10 days from its reauth date, and one not due
    seed("a")
    expiring = seed("b", reauth_in=timedelta(days=10))
    seed("c", expires_in=timedelta(minutes=45))

    # When the schedule invokes the function with events/token_refresher/scheduled.json
    result = app.lambda_handler(load_event("token_refresher/scheduled.json"), LongContext())

    # Then both due ones were refreshed and the handler's answer is the run summary
    (summary,) = result["runs"]
    assert (summary["attempted"], summary["refreshed"], summary["failed"]) == (2, 2, 0)
    assert summary["events_published"] == 1
    assert sorted(call.kwargs["refresh_token"] for call in bank.of("refresh")) == ["refresh-a", "refresh-b"]
    # And one ConnectionExpiring event reached the bus, with ids and dates only
    (event,) = bus.received()
    assert event["source"] == "aisp.gateway" and event["detail-type"] == "ConnectionExpiring"
    assert event["detail"]["connection_id"] == expiring.connection_id
    assert event["detail"]["threshold_days"] == 14 and event["detail"]["days_left"] == 10
    assert set(event["detail"]) == {
        "connection_id",
        "user_id",
        "bank_code",
        "reauth_due_at",
        "days_left",
        "threshold_days",
        "occurred_at",
    }
    # And the metrics went out in one EMF document (beside the cold-start one)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (document,) = [doc for doc in emf if "TokensRefreshed" in doc]
    values = {name: value if isinstance(value, list) else [value] for name, value in document.items()}
    assert values["TokensRefreshed"] == [2.0] and values["ReauthRequired"] == [0.0]
    assert values["TokenRefreshFailed"] == [0.0] and values["LifecycleEventsPublished"] == [1.0]
    assert "RefreshDuration" in document


def test_a_refusal_publishes_one_reauth_event_and_a_protocol_error_fails_the_invocation(
    load_event, services, bank, bus
):
    # Given one connection whose refresh token is refused and a bank answering garbage for the others
    refused = seed("julie")
    seed("other")

    def refresh(bank_code, *, refresh_token):
        if refresh_token == "refresh-julie":
            raise ReauthRequiredError("bank refused the grant", status=400, bank_code=bank_code)
        raise BankProtocolError("bank token response is empty", status=200, bank_code=bank_code)

    bank.refresh = refresh

    # When the schedule invokes the function
    with pytest.raises(TokenRefreshBatchError) as raised:
        app.lambda_handler(load_event("token_refresher/scheduled.json"), LongContext())

    # Then the invocation fails (the Errors alarm) naming the broken connection only, after the refusal was handled
    assert raised.value.failed_ids == ["cn_other"]
    assert (
        DynamoConnectionRepository(cipher=wiring.token_cipher).find("user-julie", "13807").status
        is ConnectionStatus.REAUTH_REQUIRED
    )
    (event,) = bus.received()
    assert event["detail-type"] == "ConnectionReauthRequired"
    assert event["detail"]["connection_id"] == refused.connection_id


def test_a_fan_out_message_refreshes_its_shards_only(load_event, services, bank):
    # Given due connections in and out of the shards named by events/token_refresher/fanout.json
    event = load_event("token_refresher/fanout.json")
    shards = set(json.loads(event["Records"][0]["body"])["shards"])
    names = [f"s{i:02d}" for i in range(24)]
    for name in names:
        seed(name)
    inside = sorted(f"refresh-{n}" for n in names if refresh_shard(f"user-{n}", "13807") in shards)
    assert inside and len(inside) < len(names)

    # When the queue invokes the function with that message
    result = app.lambda_handler(event, LongContext())

    # Then only those shards were refreshed
    assert sorted(call.kwargs["refresh_token"] for call in bank.of("refresh")) == inside
    assert result["runs"][0]["shards"] == sorted(shards) and result["runs"][0]["fanned_out"] == []


def test_the_default_wiring_fans_out_through_the_queue(load_event, bus, monkeypatch, aws):
    # Given the template's environment, the fan-out queue included, and more due records than one run can take
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="refresh-fanout")["QueueUrl"]
    monkeypatch.setenv("REFRESH_FANOUT_QUEUE_URL", queue_url)
    monkeypatch.setenv("REFRESH_RATE_PER_SECOND", "1")
    monkeypatch.setenv("REFRESH_TIME_RESERVE_SECONDS", "5")
    wiring.reset()
    names = [f"w{i:02d}" for i in range(40)]
    for name in names:
        seed(name, expires_in=timedelta(minutes=1))
    due_shards = {refresh_shard(f"user-{name}", "13807") for name in names}
    context = LongContext(remaining_ms=5_500)  # capacity 1/s x 1 s: every shard with due records is its own group

    # When the schedule invokes the function with no injected services (no bank credentials in this unit test, so
    # the run's own group fails and the invocation says so)
    with pytest.raises(TokenRefreshBatchError):
        app.lambda_handler(load_event("token_refresher/scheduled.json"), context)

    # Then every other group went to the queue as one fan-out request each
    bodies = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert len(bodies) == len(due_shards) - 1
    assert all(len(body["shards"]) == 1 and body["run_id"] == LongContext.aws_request_id for body in bodies)
    assert {body["shards"][0] for body in bodies} < due_shards
