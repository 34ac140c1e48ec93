"""The lazy tracer: no X-Ray SDK at import, the real tracer built once on the first traced call."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from aisp.errors import ConnectionNotFoundError
from aisp.observability import LazyTracer
from tests.conftest import REPO_ROOT


def test_importing_a_handler_does_not_import_the_xray_sdk():
    # Given a fresh interpreter with the layer on the path, as at a Lambda cold start
    code = "import sys, app; print('aws_xray_sdk' in sys.modules, 'aws_xray_sdk.core' in sys.modules)"

    # When a handler module is imported
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT / "functions" / "connect",
        env={"PYTHONPATH": f"{REPO_ROOT / 'layers' / 'aisp'}", "POWERTOOLS_SERVICE_NAME": "t"},
    )

    # Then the X-Ray SDK has not been loaded
    assert result.stdout.split() == ["False", "False"]


def test_traced_functions_work_and_build_the_tracer_once():
    tracer = LazyTracer()

    @tracer.capture_method(capture_response=False)
    def add(a: int, b: int) -> int:
        return a + b

    class Thing:
        @tracer.capture_method
        def double(self, x: int) -> int:
            return 2 * x

    assert tracer._tracer is None
    assert add(2, 3) == 5
    built = tracer._tracer
    assert built is not None
    assert Thing().double(4) == 8
    assert tracer.real is built
    assert add.__name__ == "add"


def test_traced_lambda_handler_passes_through(lambda_context):
    tracer = LazyTracer()

    @tracer.capture_lambda_handler(capture_response=False)
    def handler(event: dict, context: object) -> dict:
        return {"echo": event["x"]}

    assert handler({"x": 1}, lambda_context) == {"echo": 1}


def test_the_tracer_logs_no_error_line_for_our_errors_but_keeps_it_for_bugs(caplog):
    tracer = LazyTracer()

    @tracer.capture_method
    def refuse() -> None:
        raise ConnectionNotFoundError("no connection to this bank")

    @tracer.capture_method
    def crash() -> None:
        raise KeyError("bug")

    with caplog.at_level(logging.DEBUG, logger="aws_lambda_powertools.tracing.tracer"):
        # When a traced function raises one of our errors (an API answer such as a 404)
        with pytest.raises(ConnectionNotFoundError):
            refuse()
        # And another raises something unexpected
        with pytest.raises(KeyError):
            crash()

    # Then only the unexpected one left the tracer's ERROR line
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("aws_lambda_powertools")]
    assert len(errors) == 1
    assert errors[0].getMessage().endswith(".crash' method")


def test_tracing_on_records_aws_and_bank_calls_but_not_dynamodb_twice():
    # Given a fresh interpreter with tracing on, as on Lambda (a sampled trace, a daemon address)
    code = (
        "from aisp.observability import tracer; tracer.real; "
        "from aws_xray_sdk.core.patcher import _PATCHED_MODULES; print(' '.join(sorted(_PATCHED_MODULES)))"
    )
    env = {
        "PYTHONPATH": f"{REPO_ROOT / 'layers' / 'aisp'}",
        "POWERTOOLS_SERVICE_NAME": "t",
        "LAMBDA_TASK_ROOT": str(REPO_ROOT),
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "_X_AMZN_TRACE_ID": "Root=1-6753a5c0-0f1e2d3c4b5a69788796a5b4;Parent=53995c3f42cd8ad8;Sampled=1",
    }

    # When the tracer is built
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )

    # Then botocore (DynamoDB, AWS) and requests (the bank) are patched, and PynamoDB, which would record each
    # DynamoDB call a second time, is not
    assert result.stdout.split() == ["botocore", "requests"]
