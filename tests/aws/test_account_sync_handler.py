"""AccountSyncFunction's handler and its fan-out over moto (DynamoDB: the due index; SQS: the queue): a scheduled
run that cannot sync every due connection in time sends the other shards through the SQS adapter, and the messages
it sent, received back from the queue, are each one worker's run with a partial batch answer. The bank is a fake."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import boto3
import pytest
from pydantic import SecretStr

from aisp import wiring
from aisp.aws.messaging import SqsFanoutQueue
from aisp.clock import SystemClock
from aisp.dal import DynamoConnectionRepository, DynamoOAuthStateRepository, DynamoQuotaLedger
from aisp.dal.sync import DynamoTransactionStore
from aisp.logic.services import AccountServices, ConnectionServices
from aisp.logic.sync.scheduler import SyncServices
from aisp.models.connection import TokenPair
from aisp.models.sync import SYNC_SHARDS
from functions.account_sync import app
from tests.conftest import FakeLambdaContext
from tests.fakes import FakeAccountGateway, FakeBankGateway, stet_account, stet_transaction

BANK = "13807"
ACCOUNT = "038-CPT30019654051"


@dataclass
class LongContext(FakeLambdaContext):
    """An invocation with its whole timeout ahead (300 s in the template)."""

    def get_remaining_time_in_millis(self) -> int:
        return 290_000


@pytest.fixture
def queue(aws, monkeypatch):
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="sync-fanout")["QueueUrl"]
    # What the template gives AccountSyncFunction; a rate so low that one invocation syncs 2 connections
    monkeypatch.setenv("SYNC_FANOUT_QUEUE_URL", url)
    monkeypatch.setenv("SYNC_RATE_PER_SECOND", "0.008")
    monkeypatch.setenv("SYNC_WORKERS", "1")  # moto copies the table in a TransactWriteItems: one writer at a time
    wiring.reset()
    yield sqs, url
    wiring.reset()


@pytest.fixture
def store(queue):
    sqs, url = queue
    store = DynamoTransactionStore(wiring.token_cipher)
    bank = FakeAccountGateway()
    bank.accounts[BANK] = {"accounts": [stet_account(ACCOUNT, "FR7613807008043001965405158")]}
    bank.transactions[(BANK, ACCOUNT)] = [stet_transaction(n) for n in range(1, 4)]
    connections = ConnectionServices(
        connections=DynamoConnectionRepository(cipher=wiring.token_cipher),
        states=DynamoOAuthStateRepository(),
        bank=FakeBankGateway(),
        registry=wiring.registry(),
        transactions=store,
    )
    accounts = AccountServices(
        connections=connections, bank=bank, cursors=wiring.cursor_sealer, quota=DynamoQuotaLedger(), transactions=store
    )
    wiring.sync_services.provide(
        SyncServices(accounts=accounts, keys=connections.connections, fanout=SqsFanoutQueue(url, client=sqs))
    )
    return store


def _connect(count: int, store: DynamoTransactionStore) -> None:
    """``count`` ACTIVE connections, each in the due index and due now."""
    now = SystemClock().now()
    repo = DynamoConnectionRepository(cipher=wiring.token_cipher)
    for n in range(count):
        user = f"user-{n:02d}"
        repo.activate(
            user_id=user,
            bank_code=BANK,
            connection_id=f"cn_{n:02d}",
            expected_version=None,
            tokens=TokenPair(access_token=SecretStr(f"access-{n}"), refresh_token=SecretStr(f"refresh-{n}")),
            access_expires_at=now + timedelta(hours=1),
            reauth_due_at=now + timedelta(days=90),
            now=now,
        )
        store.schedule_sync(f"cn_{n:02d}", user_id=user, bank_code=BANK, at=now)


def _received(sqs, url) -> list[dict]:
    """The queue's messages as Lambda's SQS event source hands them to the function."""
    records = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        records += [{"messageId": m["MessageId"], "body": m["Body"], "eventSource": "aws:sqs"} for m in batch]
    return records


def _due(store) -> int:
    now = SystemClock().now()
    return sum(store.count_due_syncs(shard, due_before=now) for shard in range(SYNC_SHARDS))


def test_a_run_beyond_one_invocation_fans_out_and_each_message_is_a_workers_run(load_event, queue, store):
    sqs, url = queue
    _connect(8, store)

    summary = app.lambda_handler(load_event("account_sync/scheduled.json"), LongContext())

    # The run kept one group of shards (2 connections' worth) and sent the others through SQS
    assert summary["fanned_out"] and summary["synced"] <= 2
    records = _received(sqs, url)
    sent = [json.loads(record["body"]) for record in records]
    assert [message["shards"] for message in sent] == summary["fanned_out"]
    assert {message["run_id"] for message in sent} == {LongContext().aws_request_id}
    assert _due(store) == 8 - summary["synced"]

    # Each message is one worker's run: its shards only, nothing to redeliver
    synced = summary["synced"]
    for record in records:
        answer = app.lambda_handler({"Records": [record]}, LongContext())
        assert answer["batchItemFailures"] == []
        (run,) = answer["runs"]
        assert run["shards"] == json.loads(record["body"])["shards"] and run["fanned_out"] == []
        synced += run["synced"]
    assert (synced, _due(store)) == (8, 0)
    assert _received(sqs, url) == []  # workers never fan out again


def test_a_message_that_is_not_a_fanout_request_is_handed_back(queue, store):
    records = [
        {"messageId": "not-json", "body": "{", "eventSource": "aws:sqs"},
        {
            "messageId": "good",
            "body": json.dumps({"shards": [0], "run_id": "r", "requested_at": "2026-12-06T09:00:00Z"}),
        },
        {
            "messageId": "no-shards",
            "body": json.dumps({"shards": [], "run_id": "r", "requested_at": "2026-12-06T09:00:00Z"}),
        },
    ]

    answer = app.lambda_handler({"Records": records}, LongContext())

    # The good one ran; the others go back to the queue, then to its dead-letter queue
    assert answer["batchItemFailures"] == [{"itemIdentifier": "not-json"}, {"itemIdentifier": "no-shards"}]
    assert [run["shards"] for run in answer["runs"]] == [[0]]
