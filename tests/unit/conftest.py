"""Unit tests open no sockets (STYLE.md §8): in-process moto and fakes only."""

from __future__ import annotations

import pytest
from pytest_socket import disable_socket

from aisp import wiring


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.path.is_relative_to(item.config.rootpath / "tests" / "unit"):
        disable_socket(allow_unix_socket=True)


@pytest.fixture
def idempotency(monkeypatch):
    """Powertools idempotency on (tests run with it disabled by default), every keyed route's store built anew."""
    monkeypatch.delenv("POWERTOOLS_IDEMPOTENCY_DISABLED", raising=False)
    wiring.idempotency_store.reset()
    yield
    wiring.idempotency_store.reset()


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
    """The connection use cases over moto-backed repositories (real KMS envelope), a fake bank and a fake clock.

    The registry is resolved for ``local``, the environment the fakes stand in for (the offline sandbox: 13807 with
    trusted beneficiaries); tests of the 89C3 sandbox's or live view build their own.
    """
    from aisp.banks import load_registry
    from aisp.dal import DynamoConnectionRepository, DynamoOAuthStateRepository
    from aisp.logic.services import ConnectionServices

    return ConnectionServices(
        connections=DynamoConnectionRepository(cipher=wiring.token_cipher),
        states=DynamoOAuthStateRepository(),
        bank=bank,
        registry=load_registry(environment="local"),
        clock=clock,
        reauth_days=90,
        idempotency=wiring.idempotency_store,
    )


@pytest.fixture
def policy():
    from aisp.logic.services import ConnectPolicy
    from aisp.return_urls import parse_allowlist
    from tests.conftest import RETURN_URL_ALLOWLIST

    return ConnectPolicy(return_urls=parse_allowlist(RETURN_URL_ALLOWLIST.split(",")))


@pytest.fixture
def wired(services, policy):
    """Give the handlers ``services``/``policy`` instead of what a cold start would build (forgotten by the ``aws``
    fixture's ``wiring.reset()``)."""
    wiring.connection_services.provide(services)
    wiring.connect_policy.provide(policy)
    yield services
    wiring.connection_services.reset()
    wiring.connect_policy.reset()


# ----------------------------------------------------------------------------------------------------------------
# Account information (issue 5)
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def account_bank():
    from tests.fakes import FakeAccountGateway

    return FakeAccountGateway()


@pytest.fixture
def quota_ledger():
    """The unattended-access ledger, in memory (``tests/contract`` holds it to the DynamoDB one's behaviour)."""
    from tests.memory import MemoryQuotaLedger

    return MemoryQuotaLedger()


@pytest.fixture
def transaction_store():
    """The synced transactions, in memory (``tests/contract`` holds it to the DynamoDB store's behaviour)."""
    from tests.memory import MemoryTransactionStore

    return MemoryTransactionStore()


@pytest.fixture
def account_services(services, account_bank, quota_ledger, transaction_store):
    """The consent and account use cases over ``services`` (moto, fake OAuth bank, fake clock), a fake data bank,
    the real cursor sealer (its key derived from the moto HMAC key) and an in-memory quota ledger."""
    from aisp.logic.services import AccountServices

    return AccountServices(
        connections=services,
        bank=account_bank,
        cursors=wiring.cursor_sealer,
        quota=quota_ledger,
        transactions=transaction_store,
    )


@pytest.fixture
def account_wired(account_services):
    """Give the handlers ``account_services`` instead of what a cold start would build."""
    wiring.account_services.provide(account_services)
    yield account_services
    wiring.account_services.reset()


@pytest.fixture
def active_connection(services, clock):
    """``active_connection(user_id, bank_code)``: an ACTIVE connection with tokens, as after the callback."""
    from datetime import timedelta

    from pydantic import SecretStr

    from aisp.models.connection import TokenPair

    def _connect(user_id="user-marc", bank_code="13807", *, access_token="access-1", refresh_token="refresh-1"):  # noqa: S107
        pending = services.connections.create_pending(
            user_id=user_id, bank_code=bank_code, connection_id=f"cn_{user_id}_{bank_code}", now=clock.now()
        )
        return services.connections.activate(
            user_id=user_id,
            bank_code=bank_code,
            connection_id=pending.connection_id,
            expected_version=pending.version,
            tokens=TokenPair(access_token=SecretStr(access_token), refresh_token=SecretStr(refresh_token)),
            access_expires_at=clock.now() + timedelta(hours=1),
            reauth_due_at=clock.now() + timedelta(days=90),
            now=clock.now(),
        )

    return _connect
