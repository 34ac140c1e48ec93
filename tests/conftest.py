"""Root fixtures: a safe environment for every test, set before anything imports ``aisp``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# urllib3 probes for IPv6 with a socket when first imported; do it here, before unit tests block sockets.
import urllib3  # noqa: F401

# Fake AWS credentials and region so no test can ever reach a real account, and Powertools in test mode.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "POWERTOOLS_SERVICE_NAME": "aisp-gateway-test",
        "POWERTOOLS_METRICS_NAMESPACE": "AispGatewayTest",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_IDEMPOTENCY_DISABLED": "1",
    }
)

# The X-Ray recorder behind the (lazy) tracer opens a UDP socket when first built: build it now, before unit
# tests block sockets. Powertools shares the provider between Tracer instances, so later ones reuse it.
from aisp.observability import tracer  # noqa: E402

tracer.real  # noqa: B018 - side effect: build it

REPO_ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = REPO_ROOT / "events"


@dataclass
class FakeLambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name: str = "test-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-3:123456789012:function:test-function"
    aws_request_id: str = "52fdfc07-2182-454f-963f-5f0f9a621d72"

    def get_remaining_time_in_millis(self) -> int:
        return 15_000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def load_event():
    """Load an event file from events/ (the same files `sam local invoke -e` uses)."""

    def _load(name: str) -> dict[str, Any]:
        return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))

    return _load


@pytest.fixture(autouse=True)
def _clear_parameter_caches():
    """Powertools parameters cache clients and values globally; start every test clean."""
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    yield
    parameters.clear_caches()
