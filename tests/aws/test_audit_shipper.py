"""The audit shipper: the lines a CloudWatch Logs subscription delivers, decoded to the marked audit records and
written to the audit log group (moto)."""

from __future__ import annotations

import base64
import gzip
import json

import boto3
import pytest

from aisp import audit, wiring
from aisp.aws.logs import LogGroupWriter, decode_subscription
from aisp.errors import InvalidRequestError
from aisp.settings import load_settings

GROUP = "/aisp/audit-test"


def _subscription(messages: list[str], *, message_type="DATA_MESSAGE") -> dict:
    payload = {
        "messageType": message_type,
        "logGroup": "/aisp/functions",
        "logEvents": [
            {"id": f"e{n}", "timestamp": 1_796_000_000_000 + n, "message": m} for n, m in enumerate(messages)
        ],
    }
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}


def test_a_delivery_is_decoded_to_its_marked_records_only():
    marked = audit.AuditRecord(
        time="2026-12-06T10:00:00.000Z", kind="lifecycle", operation="started", outcome="ok", user_id="u", bank_code="1"
    ).line()

    batch = decode_subscription(_subscription([marked, '{"level":"INFO","message":"other"}', "not json"]))

    assert [json.loads(message) for _, message in batch.events] == [
        {
            "time": "2026-12-06T10:00:00.000Z",
            "kind": "lifecycle",
            "operation": "started",
            "outcome": "ok",
            "user_id": "u",
            "bank_code": "1",
            "log_event_id": "e0",
        }
    ]
    assert decode_subscription(_subscription([marked], message_type="CONTROL_MESSAGE")).events == []
    with pytest.raises(InvalidRequestError):
        decode_subscription({"awslogs": {"data": "not base64 gzip"}})


@pytest.fixture
def audit_group(aws, monkeypatch):
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName=GROUP)
    monkeypatch.setenv("AUDIT_LOG_GROUP_NAME", GROUP)
    load_settings.cache_clear()
    return logs


def test_the_shipper_writes_every_delivered_record_to_the_audit_group(audit_group, lambda_context):
    from functions.audit_shipper import app

    wiring.audit_writer.reset()
    lines = [
        audit.AuditRecord(
            time="2026-12-06T10:00:00.000Z",
            kind="bank_call",
            operation="refresh",
            outcome="ok",
            user_id=f"u{n}",
            bank_code="1",
        ).line()
        for n in range(3)
    ]

    assert app.lambda_handler(_subscription(lines), lambda_context) == {"written": 3}

    events = audit_group.filter_log_events(logGroupName=GROUP)["events"]
    assert [json.loads(e["message"])["user_id"] for e in events] == ["u0", "u1", "u2"]
    wiring.audit_writer.reset()


def test_a_shipper_that_cannot_write_fails_so_the_delivery_is_retried(aws, monkeypatch, lambda_context):
    from functions.audit_shipper import app

    monkeypatch.setenv("AUDIT_LOG_GROUP_NAME", "/aisp/no-such-group")
    load_settings.cache_clear()
    wiring.audit_writer.reset()
    line = audit.AuditRecord(
        time="2026-12-06T10:00:00.000Z", kind="lifecycle", operation="started", outcome="ok", user_id="u", bank_code="1"
    ).line()

    with pytest.raises(Exception, match="ResourceNotFoundException|does not exist"):
        app.lambda_handler(_subscription([line]), lambda_context)
    wiring.audit_writer.reset()


def test_many_records_are_written_in_batches_in_time_order(audit_group):
    writer = LogGroupWriter(GROUP, client=boto3.client("logs"))
    events = [(1_796_000_000_000 + (n * 7919) % 10_050, f'{{"n":{n}}}') for n in range(10_050)]

    assert writer.write(events) == 10_050

    written = []
    for page in audit_group.get_paginator("filter_log_events").paginate(logGroupName=GROUP):
        written += page["events"]
    assert len(written) == 10_050
    assert [e["timestamp"] for e in written] == sorted(e["timestamp"] for e in written)


def test_the_sample_delivery_of_events_is_written_as_documented(audit_group, load_event, lambda_context):
    from functions.audit_shipper import app

    wiring.audit_writer.reset()

    assert app.lambda_handler(load_event("audit_shipper/subscription.json"), lambda_context) == {"written": 1}

    (event,) = audit_group.filter_log_events(logGroupName=GROUP)["events"]
    record = json.loads(event["message"])
    assert (record["operation"], record["user_id"], record["account_id"]) == (
        "get_balances",
        "user-marc",
        "038-CPT30019654051",
    )
    assert "aisp_audit" not in record and record["log_event_id"]
    wiring.audit_writer.reset()
