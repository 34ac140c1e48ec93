"""The audit trail: records written the moment they happen, as marked JSON lines on stdout, with their
invocation's request id and caller (worker threads too). The shipper to the audit log group: tests/aws."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from aisp import audit
from aisp.errors import BankUnavailableError
from aisp.models.connection import Connection, ConnectionStatus
from aisp.observability import tracer

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
