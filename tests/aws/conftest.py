"""The aws tier: tests whose subject is an AWS adapter (KMS, Secrets Manager, CloudWatch Logs, EventBridge, SQS,
Powertools idempotency on its DynamoDB table), over moto in process. Like the unit tier, they open no sockets."""

from __future__ import annotations

import pytest
from pytest_socket import disable_socket


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.path.is_relative_to(item.config.rootpath / "tests" / "aws"):
        disable_socket(allow_unix_socket=True)
