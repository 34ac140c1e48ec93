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

# The use cases' services over the in-memory stack, shared by tests/unit and tests/aws.
pytest_plugins = ["tests.use_cases"]

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


@pytest.fixture(autouse=True)
def _clear_metrics():
    """Powertools keeps metrics and dimensions in a process-wide set; logic tests add to it outside a handler."""
    from aisp.observability import metrics

    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


# ----------------------------------------------------------------------------------------------------------------
# The gateway's AWS side under moto (in-process): DynamoDB tables from the PynamoDB models, a KMS key, the env.
# ----------------------------------------------------------------------------------------------------------------

CONNECTIONS_TABLE = "aisp-connections-test"
STATES_TABLE = "aisp-oauth-states-test"
IDEMPOTENCY_TABLE = "aisp-idempotency-test"
QUOTA_TABLE = "aisp-quota-test"
SYNC_TABLE = "aisp-sync-test"
SECRET_NAME = "aisp/bank-credentials"
RETURN_URL_ALLOWLIST = "https://app.example.com/connections/,com.example.fintech:/oauth"


def clear_gateway_caches() -> None:
    """Every per-container object the gateway keeps: settings, clients, repositories, cipher, services."""
    from aisp import wiring

    wiring.reset()


@dataclass
class AwsStack:
    """What the ``aws`` fixture created."""

    key_arn: str
    cursor_key_arn: str
    kms: Any
    dynamodb: Any
    secrets: Any

    def raw_connection(self, user_id: str, bank_code: str) -> dict[str, Any]:
        """The item exactly as DynamoDB stores it (attribute-value maps)."""
        response = self.dynamodb.get_item(
            TableName=CONNECTIONS_TABLE,
            Key={"user_id": {"S": user_id}, "bank_code": {"S": bank_code}},
            ConsistentRead=True,
        )
        return response.get("Item", {})


def create_idempotency_table(dynamodb: Any) -> None:
    """template.yaml's IdempotencyTable (Powertools' default attribute names: ``id``, TTL ``expiration``)."""
    dynamodb.create_table(
        TableName=IDEMPOTENCY_TABLE,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def gateway_env(monkeypatch):
    """The environment template.yaml gives the connect and callback functions (bank: the 89C3 sandbox hosts)."""
    values = {
        "STAGE": "test",
        "CONNECTIONS_TABLE_NAME": CONNECTIONS_TABLE,
        "OAUTH_STATES_TABLE_NAME": STATES_TABLE,
        "TOKEN_KEY_ID": "replaced-by-the-aws-fixture",
        "BANK_ENVIRONMENT": "sandbox",
        "BANK_CREDENTIALS_SECRET_NAME": SECRET_NAME,
        "REAUTH_DAYS": "90",
        "OAUTH_CALLBACK_URL": "",
        "RETURN_URL_ALLOWLIST": RETURN_URL_ALLOWLIST,
        "IDEMPOTENCY_TABLE_NAME": IDEMPOTENCY_TABLE,
        "QUOTA_TABLE_NAME": QUOTA_TABLE,
        "SYNC_TABLE_NAME": SYNC_TABLE,
        "CURSOR_KEY_ID": "replaced-by-the-aws-fixture",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    clear_gateway_caches()
    yield values
    clear_gateway_caches()


@pytest.fixture
def aws(gateway_env, monkeypatch):
    """moto (DynamoDB, KMS, Secrets Manager) with both tables created from the PynamoDB models and a KMS key."""
    import boto3
    from moto import mock_aws

    from aisp.dal.tables import ConnectionRecord, OAuthStateRecord, QuotaRecord, SyncRecord

    with mock_aws():
        kms = boto3.client("kms")
        key_arn = kms.create_key(Description="aisp tokens (test)")["KeyMetadata"]["Arn"]
        monkeypatch.setenv("TOKEN_KEY_ID", key_arn)
        # template.yaml's CursorKey: an HMAC key the cursor sealing key is derived from (aisp/cursors.py).
        cursor_key_arn = kms.create_key(
            Description="aisp cursors (test)", KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC"
        )["KeyMetadata"]["Arn"]
        monkeypatch.setenv("CURSOR_KEY_ID", cursor_key_arn)
        clear_gateway_caches()
        ConnectionRecord.create_table(billing_mode="PAY_PER_REQUEST", wait=False)  # moto: ACTIVE at once
        OAuthStateRecord.create_table(billing_mode="PAY_PER_REQUEST", wait=False)  # moto: ACTIVE at once
        QuotaRecord.create_table(billing_mode="PAY_PER_REQUEST", wait=False)  # moto: ACTIVE at once
        SyncRecord.create_table(billing_mode="PAY_PER_REQUEST", wait=False)  # moto: ACTIVE at once
        create_idempotency_table(boto3.client("dynamodb"))
        yield AwsStack(
            key_arn=key_arn,
            cursor_key_arn=cursor_key_arn,
            kms=kms,
            dynamodb=boto3.client("dynamodb"),
            secrets=boto3.client("secretsmanager"),
        )
        clear_gateway_caches()


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001 - pytest's hook signature
    """Print the reliability suite's counts (tests/reliability/tally.py) after every run."""
    from tests.reliability.tally import summary_lines

    lines = summary_lines()
    if lines:
        terminalreporter.section("reliability suite")
        for line in lines:
            terminalreporter.write_line(line)
