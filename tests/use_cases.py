"""Fixtures: the use cases' services over the in-memory stack, for the unit tier and the aws tier alike.

``services`` is built over ``tests.memory``'s repositories (the contract suite holds them to the DynamoDB ones), a
local AES-GCM envelope cipher (``tests.fakes.local_token_cipher``) and a cursor sealer with a random key, so a logic
test touches no AWS at all, not even moto. The same objects are given to ``aisp.wiring``'s factories, so a handler
that builds anything else from them still finds no AWS. Registered by ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from aisp import wiring


@dataclass
class MemoryStack:
    """What a cold start would build from AWS, in memory: both repositories, the token cipher, the cursor sealer."""

    connections: Any
    states: Any
    cipher: Any
    cursors: Any

    def raw_connection(self, user_id: str, bank_code: str) -> dict[str, Any]:
        """The item as DynamoDB would store it (attribute-value maps; ``{}`` when there is none)."""
        return dict(self.connections.raw_connection(user_id, bank_code))

    def raw_states(self) -> list[dict[str, Any]]:
        """Every OAuth state as a ``Scan`` of the states table would return it."""
        return list(self.states.raw_items())

    def raw_state(self, state_hash: str) -> dict[str, Any]:
        """The state stored under ``state_hash``, as a ``GetItem`` would return it."""
        (item,) = (item for item in self.raw_states() if item["state_hash"] == {"S": state_hash})
        return item


@pytest.fixture
def memory_stack(gateway_env) -> Iterator[MemoryStack]:  # noqa: ARG001 - the settings the handlers read
    """The in-memory stack, also given to ``aisp.wiring`` (``gateway_env``'s ``wiring.reset()`` forgets it)."""
    from aisp.cursors import CursorSealer
    from aisp.settings import CursorSettings, load_settings
    from tests.fakes import local_token_cipher
    from tests.memory import MemoryConnectionRepository, MemoryOAuthStateRepository

    cipher = local_token_cipher()
    built = MemoryStack(
        connections=MemoryConnectionRepository(cipher),
        states=MemoryOAuthStateRepository(),
        cipher=cipher,
        cursors=CursorSealer(os.urandom(32), ttl_seconds=load_settings(CursorSettings).cursor_ttl_seconds),
    )
    wiring.token_cipher.provide(built.cipher)
    wiring.connection_repository.provide(built.connections)
    wiring.state_repository.provide(built.states)
    wiring.cursor_sealer.provide(built.cursors)
    yield built
    wiring.reset()


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
def services(memory_stack, bank, clock):
    """The connection use cases over the in-memory stack, a fake bank and a fake clock.

    The registry is resolved for ``local``, the environment the fakes stand in for (the offline sandbox: 13807 with
    trusted beneficiaries); tests of the 89C3 sandbox's or live view build their own.
    """
    from aisp.banks import load_registry
    from aisp.logic.services import ConnectionServices

    return ConnectionServices(
        connections=memory_stack.connections,
        states=memory_stack.states,
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
    """Give the handlers ``services``/``policy`` instead of what a cold start would build."""
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
def quota_ledger(memory_stack):  # noqa: ARG001 - its wiring.reset() forgets the ledger given to the wiring
    """The unattended-access ledger, in memory (``tests/contract`` holds it to the DynamoDB one's behaviour)."""
    from tests.memory import MemoryQuotaLedger

    ledger = MemoryQuotaLedger()
    wiring.quota_ledger.provide(ledger)
    return ledger


@pytest.fixture
def transaction_store(memory_stack):  # noqa: ARG001 - its wiring.reset() forgets the store given to the wiring
    """The synced transactions, in memory (``tests/contract`` holds it to the DynamoDB store's behaviour)."""
    from tests.memory import MemoryTransactionStore

    store = MemoryTransactionStore()
    wiring.transaction_store.provide(store)
    return store


@pytest.fixture
def account_services(services, memory_stack, account_bank, quota_ledger, transaction_store):
    """The consent and account use cases over ``services``, a fake data bank, the stack's cursor sealer, and the
    in-memory quota ledger and transaction store."""
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
