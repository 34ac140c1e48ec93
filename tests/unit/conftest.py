"""Unit tests open no sockets (STYLE.md §8) and touch no AWS, not even moto: the in-memory stack and fakes only
(``tests/use_cases.py``). Tests whose subject is an AWS adapter live in ``tests/aws``."""

from __future__ import annotations

import pytest
from pytest_socket import disable_socket


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.path.is_relative_to(item.config.rootpath / "tests" / "unit"):
        disable_socket(allow_unix_socket=True)


@pytest.fixture
def aws():
    """moto is not for this tier: a test that needs it has an AWS adapter as its subject and belongs in tests/aws."""
    pytest.fail("unit tests run without moto: move this test to tests/aws (docs/testing.md)")
