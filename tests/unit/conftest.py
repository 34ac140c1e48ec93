"""Unit tests open no sockets (STYLE.md §8): in-process moto and fakes only."""

from __future__ import annotations

import pytest
from pytest_socket import disable_socket


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.path.is_relative_to(item.config.rootpath / "tests" / "unit"):
        disable_socket(allow_unix_socket=True)


@pytest.fixture
def clock():
    from tests.fakes import FakeClock

    return FakeClock()


@pytest.fixture
def bank():
    from tests.fakes import FakeBankGateway

    return FakeBankGateway()


@pytest.fixture
def services(aws, bank, clock):
    """The connection use cases over moto-backed repositories (real KMS envelope), a fake bank and a fake clock."""
    from aisp.banks import get_registry
    from aisp.dal import DynamoConnectionRepository, DynamoOAuthStateRepository
    from aisp.logic.services import ConnectionServices

    return ConnectionServices(
        connections=DynamoConnectionRepository(),
        states=DynamoOAuthStateRepository(),
        bank=bank,
        registry=get_registry(),
        clock=clock,
        reauth_days=90,
    )


@pytest.fixture
def policy():
    from aisp.logic.services import ConnectPolicy
    from aisp.return_urls import parse_allowlist
    from tests.conftest import RETURN_URL_ALLOWLIST

    return ConnectPolicy(return_urls=parse_allowlist(RETURN_URL_ALLOWLIST.split(",")))


@pytest.fixture
def wired(services, policy):
    """Route the handlers' default factories to ``services``/``policy`` (what a cold start would build).

    Restored here rather than by ``monkeypatch``, whose undo would run after the ``aws`` fixture's teardown.
    """
    from aisp.logic import services as wiring

    original = (wiring.get_connection_services, wiring.get_connect_policy)
    wiring.get_connection_services = lambda: services
    wiring.get_connect_policy = lambda: policy
    yield services
    wiring.get_connection_services, wiring.get_connect_policy = original
