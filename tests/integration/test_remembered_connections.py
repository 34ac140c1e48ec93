"""A warm account query calls the bank while its connection is read (aisp.logic.remembered), and the read still
decides: the accounts handler, moto and the offline 89C3 sandbox over HTTPS with mTLS, as in test_account_queries.

The account services are the deployed ones, watched: their connection repository and bank gateway record the order
of reads and bank calls, and a read can be held until a bank call has started (it then proves the overlap without
any timing). "Elsewhere" is what another container does: the same use cases with their own services and memory.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from aisp import wiring
from aisp.banks import BankRegistry
from aisp.logic.bank_calls import FORCE_REFRESH_MARGIN_SECONDS
from aisp.logic.connections import delete_connection
from aisp.logic.refresh.on_demand import usable_tokens
from aisp.logic.remembered import RememberedConnections
from aisp.logic.services import AccountServices
from aisp.models.connection import ConsentSnapshot
from aisp.stet.gateway import StetAccountGateway
from tests.integration.journey import BANK, accounts, at_path, connect_persona, consent, event
from tests.sandbox.helpers import MARC_ACCOUNTS, MARC_IBANS

pytestmark = pytest.mark.integration

USER = "user-marc"
ACCOUNT = MARC_ACCOUNTS[0]
SEED_BALANCES = [("VALU", "4321.95"), ("CLBD", "4179.95"), ("OTHR", "4348.95")]
HOLD_SECONDS = 5.0


class Watch:
    """The order of connection reads and bank calls, and a switch that holds reads until a bank call starts."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.hold_reads = False
        self.bank_started = threading.Event()
        self.services: AccountServices
        self._lock = threading.Lock()

    def note(self, step: str) -> None:
        with self._lock:
            self.steps.append(step)

    def next_request(self, *, hold_reads: bool) -> None:
        self.steps.clear()
        self.bank_started.clear()
        self.hold_reads = hold_reads


class WatchedRepository:
    def __init__(self, inner: Any, watch: Watch) -> None:
        self._inner, self._watch = inner, watch

    def get_with_tokens(self, user_id: str, bank_code: str) -> Any:
        if self._watch.hold_reads:
            # Released by the bank call if it is already under way; otherwise the read goes on after HOLD_SECONDS.
            self._watch.note("read held" if self._watch.bank_started.wait(HOLD_SECONDS) else "read not overlapped")
        found = self._inner.get_with_tokens(user_id, bank_code)
        self._watch.note("read")
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class WatchedBank:
    def __init__(self, inner: StetAccountGateway, watch: Watch) -> None:
        self._inner, self._watch = inner, watch

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        def watched(*args: Any, **kwargs: Any) -> Any:
            self._watch.note(f"bank {name}")
            self._watch.bank_started.set()
            return method(*args, **kwargs)

        return watched


@pytest.fixture
def watch(gateway) -> Iterator[Watch]:
    """The accounts function's services, as deployed (a RememberedConnections) but watched.

    Replaced like ``gateway`` replaces the connection services, and put back before the gateway's caches are cleared.
    """
    watched = Watch()
    connections = dataclasses.replace(gateway, connections=WatchedRepository(gateway.connections, watched))
    watched.services = AccountServices(
        connections=connections,
        bank=WatchedBank(StetAccountGateway(wiring.bank_clients), watched),
        cursors=wiring.cursor_sealer,
        quota=wiring.quota_ledger(),
        transactions=wiring.transaction_store(),
        remembered=RememberedConnections(),
    )
    wiring.account_services.provide(watched.services)
    yield watched
    wiring.account_services.reset()


def _balances(load_event, lambda_context) -> tuple[dict[str, Any], Any]:
    path = f"/v1/connections/{BANK}/accounts/{ACCOUNT}/balances"
    loaded = at_path(event(load_event, "accounts/get_balances.json"), path, bank_code=BANK, account_id=ACCOUNT)
    return accounts(loaded, lambda_context)


def _seed_balances(response: dict[str, Any], body: Any) -> None:
    assert response["statusCode"] == 200, body
    assert [(b["type"], b["amount"]) for b in body["balances"]] == SEED_BALANCES


def test_a_warm_query_calls_the_bank_while_its_connection_is_read(gateway, watch, load_event, lambda_context):
    # Given Marc connected, and a first balances query in this container (nothing remembered: read, then bank)
    connect_persona(load_event, lambda_context)
    watch.next_request(hold_reads=False)
    _seed_balances(*_balances(load_event, lambda_context))
    assert watch.steps == ["read", "bank get_balances"]

    # When he asks again, with the connection's read held until a bank call is under way
    watch.next_request(hold_reads=True)
    response, body = _balances(load_event, lambda_context)

    # Then the bank call started while the connection was being read, and its answer was returned once read
    _seed_balances(response, body)
    assert watch.steps == ["bank get_balances", "read held", "read"]


def test_a_connection_deleted_elsewhere_is_gone_on_the_next_query(gateway, watch, load_event, lambda_context):
    # Given Marc's connection remembered by this container
    connect_persona(load_event, lambda_context)
    _seed_balances(*_balances(load_event, lambda_context))
    assert watch.services.remembered.recall(USER, BANK) is not None

    # When he deletes it through another container (tokens revoked at the bank, record REVOKED)
    delete_connection(USER, BANK, services=gateway)

    # Then his next query is 404 connection_not_found, with no balance in it, and nothing is remembered any more
    watch.next_request(hold_reads=False)
    response, body = _balances(load_event, lambda_context)
    assert response["statusCode"] == 404, body
    assert body["code"] == "connection_not_found"
    assert "4321.95" not in response["body"]
    assert watch.services.remembered.recall(USER, BANK) is None

    # And the query after it reads first, as for a connection never seen (still 404)
    watch.next_request(hold_reads=False)
    response, body = _balances(load_event, lambda_context)
    assert response["statusCode"] == 404, body
    assert watch.steps == ["read"]


def test_a_consent_stored_elsewhere_makes_the_call_again(gateway, watch, load_event, lambda_context):
    # Given Marc's connection remembered by this container
    connect_persona(load_event, lambda_context)
    _seed_balances(*_balances(load_event, lambda_context))

    # When another container stores a new consent on his connection
    connection = gateway.connections.find(USER, BANK)
    new_consent = ConsentSnapshot(balances=MARC_IBANS, transactions=MARC_IBANS, updated_at=datetime.now(UTC))
    gateway.connections.store_consent(connection, consent=new_consent, now=datetime.now(UTC))

    # Then the answer obtained under the remembered consent is dropped and the call made again after the read
    watch.next_request(hold_reads=False)
    _seed_balances(*_balances(load_event, lambda_context))
    assert sorted(watch.steps) == ["bank get_balances", "bank get_balances", "read"]
    assert watch.steps[-1] == "bank get_balances"  # the second call, after the read
    recalled = watch.services.remembered.recall(USER, BANK)
    assert recalled is not None and recalled[0].consent == new_consent


def test_tokens_refreshed_elsewhere_are_picked_up_without_a_refresh_here(gateway, watch, load_event, lambda_context):
    # Given Marc's connection remembered by this container
    connect_persona(load_event, lambda_context)
    _seed_balances(*_balances(load_event, lambda_context))
    _, remembered_tokens = watch.services.remembered.recall(USER, BANK)

    # When another container refreshes his tokens
    refreshes = gateway.bank.counts.get("refresh", 0)
    _, fresh = usable_tokens(USER, BANK, services=gateway, margin_seconds=FORCE_REFRESH_MARGIN_SECONDS)
    assert fresh.access_token != remembered_tokens.access_token
    assert gateway.bank.counts["refresh"] == refreshes + 1

    # Then his next query answers with the seed's balances; this container refreshed nothing, and remembers the new
    # token
    watch.next_request(hold_reads=False)
    _seed_balances(*_balances(load_event, lambda_context))
    assert gateway.bank.counts["refresh"] == refreshes + 1
    assert watch.services.remembered.recall(USER, BANK)[1] == fresh


def test_a_consent_submission_never_calls_the_bank_before_the_read(gateway, watch, load_event, lambda_context):
    # Given Marc's connection remembered by the same services (a read-only query first)
    connect_persona(load_event, lambda_context)
    _seed_balances(*_balances(load_event, lambda_context))

    # When he submits a consent (a write at the bank)
    watch.next_request(hold_reads=False)
    body = {"balances": MARC_IBANS, "transactions": MARC_IBANS, "psu_identity": True, "trusted_beneficiaries": True}
    loaded = at_path(
        event(load_event, "consents/submit_consent.json"), f"/v1/connections/{BANK}/consent", bank_code=BANK
    )
    loaded["body"] = json.dumps(body)
    loaded["headers"].pop("idempotency-key", None)
    response, answer = consent(loaded, lambda_context)

    # Then the connection was read before the bank was called
    assert response["statusCode"] == 200, answer
    assert watch.steps.index("read") < watch.steps.index("bank put_consents")


def test_a_bank_that_cannot_revoke_tokens_is_never_called_before_the_read(gateway, watch, load_event, lambda_context):
    # Given a registry where Marc's bank cannot revoke tokens (a deleted connection's token would still work there)
    registry = gateway.registry
    irrevocable = [
        bank.model_copy(update={"capabilities": bank.capabilities.model_copy(update={"token_revocation": False})})
        if bank.bank_code == BANK
        else bank
        for bank in registry.banks
    ]
    services = watch.services
    connections = dataclasses.replace(services.connections, registry=BankRegistry(irrevocable))
    wiring.account_services.provide(dataclasses.replace(services, connections=connections))
    connect_persona(load_event, lambda_context)
    _seed_balances(*_balances(load_event, lambda_context))
    assert services.remembered.recall(USER, BANK) is not None

    # When he asks again
    watch.next_request(hold_reads=False)
    _seed_balances(*_balances(load_event, lambda_context))

    # Then the read came first, as without a memory
    assert watch.steps == ["read", "bank get_balances"]
