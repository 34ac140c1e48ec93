"""The audit trail: records written the moment they happen, as marked JSON lines on stdout, with their
invocation's request id and caller (worker threads too); and the shipper that writes the lines a subscription
delivers to the audit log group (moto)."""

from __future__ import annotations

import base64
import gzip
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import boto3
import pytest

from aisp import audit, wiring
from aisp.aws.logs import LogGroupWriter, decode_subscription
from aisp.errors import BankUnavailableError, InvalidRequestError
from aisp.models.connection import Connection, ConnectionStatus
from aisp.observability import tracer
from aisp.settings import load_settings

GROUP = "/aisp/audit-test"
CONNECTION = Connection(
    connection_id="cn_1",
    user_id="user-marc",
    bank_code="13807",
    status=ConnectionStatus.ACTIVE,
    created_at=datetime(2026, 12, 6, tzinfo=UTC),
    updated_at=datetime(2026, 12, 6, tzinfo=UTC),
    version=2,
)


def _lines(capsys) -> list[dict]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"') and '"aisp_audit":1' in line]


def _http_event(sub="user-marc", request_id="req-1"):
    return {"requestContext": {"requestId": request_id, "authorizer": {"jwt": {"claims": {"sub": sub}}}}}


def test_records_are_marked_lines_carrying_their_invocation_from_every_thread(capsys, lambda_context):
    # Given a handler whose bank calls run in worker threads, one of which fails
    @audit.invocation
    def handler(event, context):
        def call(account_id):
            outcome = "unavailable" if account_id == "acc-3" else "ok"
            audit.bank_call(
                "get_balances",
                outcome,
                user_id="user-marc",
                bank_code="13807",
                connection_id="cn_1",
                account_id=account_id,
                attended=True,
            )

        worker = tracer.in_worker_thread(call)
        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(worker, ["acc-1", "acc-2", "acc-3"]))
        audit.lifecycle(CONNECTION, "activated")

    # When it runs
    handler(_http_event(), lambda_context)

    # Then each record is one marked line with the invocation's request id and caller
    lines = _lines(capsys)
    assert sorted(r["account_id"] for r in lines if r["kind"] == "bank_call") == ["acc-1", "acc-2", "acc-3"]
    assert {(r["aisp_audit"], r["request_id"], r["caller"], r["user_id"]) for r in lines} == {
        (1, "req-1", "user-marc", "user-marc")
    }
    assert [r["outcome"] for r in lines if r.get("account_id") == "acc-3"] == ["unavailable"]
    (change,) = [r for r in lines if r["kind"] == "lifecycle"]
    assert (change["operation"], change["connection_id"], change["function"]) == (
        "activated",
        "cn_1",
        lambda_context.function_name,
    )


def test_a_call_that_raises_is_audited_with_its_kind_and_the_error_goes_on(capsys, lambda_context):
    @audit.invocation
    def handler(event, context):
        with audit.calling("refresh", user_id="user-marc", bank_code="13807", connection_id="cn_1"):
            raise BankUnavailableError("bank did not answer", bank_code="13807")

    with pytest.raises(BankUnavailableError):
        handler({}, lambda_context)  # a scheduled invocation: no caller, nobody present

    (record,) = _lines(capsys)
    assert (record["operation"], record["outcome"], record["attended"]) == ("refresh", "unavailable", False)
    assert "caller" not in record and record["request_id"] == lambda_context.aws_request_id


def test_audit_lines_are_written_whatever_the_log_level(capsys, monkeypatch):
    monkeypatch.setattr(logging.getLogger(), "level", logging.CRITICAL)
    logging.getLogger("aws_lambda_powertools").setLevel(logging.CRITICAL)

    audit.lifecycle(CONNECTION, "deleted")

    (record,) = _lines(capsys)
    assert record["operation"] == "deleted" and "request_id" not in record


def test_a_record_holds_ids_never_a_token_or_an_iban():
    record = audit.AuditRecord(
        time="2026-12-06T10:00:00.000Z",
        kind="bank_call",
        operation="get_balances",
        outcome="ok",
        user_id="user-marc",
        bank_code="13807",
        account_id="038-CPT30019654051",
    )

    assert json.loads(record.line()) == {
        "aisp_audit": 1,
        "time": "2026-12-06T10:00:00.000Z",
        "kind": "bank_call",
        "operation": "get_balances",
        "outcome": "ok",
        "user_id": "user-marc",
        "bank_code": "13807",
        "account_id": "038-CPT30019654051",
    }
    assert set(audit.AuditRecord.__dataclass_fields__) == {
        "time",
        "kind",
        "operation",
        "outcome",
        "user_id",
        "bank_code",
        "connection_id",
        "account_id",
        "attended",
        "caller",
        "request_id",
        "function",
    }


# --- the shipper -------------------------------------------------------------------------------------------------


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
