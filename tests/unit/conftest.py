"""Unit tests open no sockets (STYLE.md §8): in-process moto and fakes only."""

from __future__ import annotations

import pytest
from pytest_socket import disable_socket


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.path.is_relative_to(item.config.rootpath / "tests" / "unit"):
        disable_socket(allow_unix_socket=True)
