"""The e2e journey (``tests/e2e/test_journey.py``) through a Python client generated from docs/openapi.json by
``openapi-python-client``, against the local stack on free ports: Marc connects B.P Grand Ouest, consents, reads
his accounts, balances, every transaction, identity and beneficiaries. The client raises on any status the document
does not declare, and every answer, error paths included (401, 404, 400, 409, 422, 429 when the sandbox is told
to), arrives as the generated model the document names. No cast, no hand-written model, no raw HTTP but the local
token and the bank's own login screens (a browser's part).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
import requests

from local.stack import RunningStack, start_stack
from tests.clients.conftest import GeneratedClient
from tests.e2e.test_journey import COMPTE_PERSO, MARC_IBANS, SEED_BALANCES, TIMEOUT, back_at_the_app, log_in_at_bank

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

BANK = "13807"
OTHER_BANK = "10207"


@pytest.fixture(scope="module")
def stack(state_dir) -> Iterator[RunningStack]:
    with start_stack(
        api_port=0, moto_port=0, sandbox_port=0, sandbox_screens_port=0, state_dir=state_dir, sandbox_admin=True
    ) as running:
        yield running


def token_for(stack: RunningStack, user: str) -> str:
    """The local identity provider's JWT (the fintech's own IdP in production: not part of the API)."""
    response = requests.get(f"{stack.api_url}/_local/token", params={"user": user}, timeout=TIMEOUT)
    response.raise_for_status()
    return str(response.json()["access_token"])


class Api:
    """One user's generated client: every call answers ``(status, parsed model)``; undeclared statuses raise."""

    def __init__(self, generated: GeneratedClient, base_url: str, token: str | None) -> None:
        self.generated = generated
        client = generated.client
        self.client = (
            client.Client(base_url=base_url, raise_on_unexpected_status=True)
            if token is None
            else client.AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)
        )

    def call(self, operation: str, *args: Any, **kwargs: Any) -> tuple[int, Any]:
        response = self.generated.api(operation).sync_detailed(*args, client=self.client, **kwargs)
        return int(response.status_code), response.parsed

    def ok(self, operation: str, model: str, *args: Any, status: int = 200, **kwargs: Any) -> Any:
        """A success: ``status`` and an instance of the generated ``model``."""
        got, parsed = self.call(operation, *args, **kwargs)
        assert got == status, (operation, got, parsed)
        assert isinstance(parsed, self.generated.model(model)), (operation, type(parsed))
        return parsed

    def problem(self, operation: str, status: int, code: str, *args: Any, **kwargs: Any) -> Any:
        """An error of ours: ``status`` and a generated ``Problem`` with this ``code``."""
        got, parsed = self.call(operation, *args, **kwargs)
        assert got == status, (operation, got, parsed)
        assert isinstance(parsed, self.generated.model("Problem")), (operation, type(parsed))
        assert (parsed.status, parsed.code) == (status, code)
        assert parsed.type_ == f"urn:aisp-gateway:error:{code}" and parsed.title and parsed.request_id
        return parsed

    def gateway(self, operation: str, status: int, message: str, *args: Any, **kwargs: Any) -> Any:
        """API Gateway's own answer: ``status`` and a generated ``GatewayError``."""
        got, parsed = self.call(operation, *args, **kwargs)
        assert got == status, (operation, got, parsed)
        assert isinstance(parsed, self.generated.model("GatewayError")), (operation, type(parsed))
        assert parsed.message == message
        return parsed


def test_marc_goes_through_the_journey_with_a_generated_python_client(stack, python_client):
    m = python_client.model
    api = Api(python_client, stack.api_url, token_for(stack, "marc"))

    # Given the bank list
    banks = api.ok("banks.list_banks", "ListBanksResponse")
    bank = next(bank for bank in banks.banks if bank.bank_code == BANK)
    assert bank.network is m("Network").BANQUE_POPULAIRE and bank.capabilities.identity is True

    # When he connects B.P Grand Ouest, the app retrying its POST with the same Idempotency-Key
    key = str(uuid.uuid4())
    body = m("CreateConnectionRequest")(bank_code=BANK, return_url=f"{stack.api_url}/")
    started = api.ok(
        "connections.create_connection", "CreateConnectionResponse", status=201, body=body, idempotency_key=key
    )
    again = api.ok(
        "connections.create_connection", "CreateConnectionResponse", status=201, body=body, idempotency_key=key
    )
    assert again.to_dict() == started.to_dict()
    assert api.ok("connections.get_connection", "ConnectionSummary", BANK).status is m("ConnectionStatus").PENDING

    # And logs in at the sandbox's screens, which send his browser back to the app through the gateway's callback
    outcome = back_at_the_app(stack, log_in_at_bank(started.authorization_url))
    assert outcome["status"] == "authorized"

    # Then the app completes the connection with the one-time value: active, the same connection, no consent yet
    completion = m("CompleteConnectionRequest")(completion=outcome["completion"])
    done = api.ok("connections.complete_connection", "ConnectionSummary", BANK, body=completion)
    assert (done.status, done.connection_id, done.consent, done.status_reason) == (
        m("ConnectionStatus").ACTIVE,
        started.connection_id,
        None,
        None,
    )
    listed = api.ok("connections.list_connections", "ListConnectionsResponse")
    assert [c.to_dict() for c in listed.connections] == [done.to_dict()]

    # When the app lists his accounts and he consents to every IBAN (identity and beneficiaries too)
    accounts = api.ok("accounts.list_accounts", "ListAccountsResponse", BANK)
    ibans = [account.iban for account in accounts.accounts if account.iban is not None]
    assert tuple(ibans) == MARC_IBANS
    consent = m("SubmitConsentRequest")(
        balances=ibans, transactions=ibans, psu_identity=True, trusted_beneficiaries=True
    )
    submitted = api.ok("consents.submit_consent", "SubmitConsentResponse", BANK, body=consent, idempotency_key=key)
    assert submitted.consent.balances == ibans and submitted.consent.psu_identity is True
    assert isinstance(submitted.consent.updated_at, datetime)

    # Then his balances are the seed's, and every transaction comes, page after page, while has_more
    balances = api.ok("accounts.get_balances", "BalancesResponse", BANK, COMPTE_PERSO)
    assert [balance.amount for balance in balances.balances] == SEED_BALANCES
    transactions, pages, cursor = [], 0, None
    while True:
        query = {} if cursor is None else {"cursor": cursor}
        page = api.ok("accounts.list_transactions", "TransactionsResponse", BANK, COMPTE_PERSO, **query)
        transactions += page.transactions
        pages += 1
        assert page.has_more is (page.next_cursor is not None)
        if not page.has_more or pages > 20:
            break
        cursor = page.next_cursor
    assert len(transactions) > 300 and pages == -(-len(transactions) // 100)
    assert all(Decimal(t.amount) < 0 for t in transactions if t.credit_debit is m("TransactionItemCreditDebit").DEBIT)
    assert transactions[0].status is m("TransactionItemStatus").PENDING

    # And his identity, his beneficiaries and the accounts of every bank at once
    assert api.ok("accounts.get_identity", "IdentityResponse", BANK).full_name == "MALLOW MARC"
    beneficiaries = api.ok("accounts.list_trusted_beneficiaries", "TrustedBeneficiariesResponse", BANK)
    assert all(isinstance(b, m("BeneficiaryItem")) for b in beneficiaries.beneficiaries)
    everything = api.ok("accounts.list_all_accounts", "AllAccountsResponse")
    assert {a.iban for a in everything.accounts} == set(MARC_IBANS) and everything.errors == []

    # When he deletes the connection: 204, and it is revoked
    assert api.call("connections.delete_connection", BANK)[0] == 204
    assert api.ok("connections.get_connection", "ConnectionSummary", BANK).status is m("ConnectionStatus").REVOKED


def test_every_error_path_arrives_as_its_documented_type(stack, python_client):
    m = python_client.model
    api = Api(python_client, stack.api_url, token_for(stack, "erin"))

    # 401: API Gateway's JWT authorizer answers {"message"} (no token, or one it does not accept)
    Api(python_client, stack.api_url, None).gateway("banks.list_banks", 401, "Unauthorized")
    Api(python_client, stack.api_url, "not-a-jwt").gateway("connections.list_connections", 401, "Unauthorized")

    # 404: ours for a connection she does not have; API Gateway's for a path no route matches (an empty id)
    api.problem("connections.get_connection", 404, "connection_not_found", OTHER_BANK)
    api.problem(
        "connections.create_connection",
        404,
        "bank_not_found",
        body=m("CreateConnectionRequest")(bank_code="99999", return_url=f"{stack.api_url}/"),
    )
    api.gateway("accounts.get_balances", 404, "Not Found", BANK, "")

    # 400: a field the API refuses, named in typed {field, message} items (never the value)
    bad = api.problem(
        "connections.create_connection",
        400,
        "validation_error",
        body=m("CreateConnectionRequest")(bank_code="1380", return_url=f"{stack.api_url}/"),
    )
    assert [(e.field, type(e)) for e in bad.errors] == [("body.bank_code", m("FieldError"))] and bad.errors[0].message

    # 409: a connection whose login is not finished serves no data
    key = str(uuid.uuid4())
    body = m("CreateConnectionRequest")(bank_code=BANK, return_url=f"{stack.api_url}/")
    started = api.ok(
        "connections.create_connection", "CreateConnectionResponse", status=201, body=body, idempotency_key=key
    )
    api.problem("accounts.list_accounts", 409, "connection_pending", BANK)

    # 422: the same Idempotency-Key with another body
    other = m("CreateConnectionRequest")(bank_code=OTHER_BANK, return_url=f"{stack.api_url}/")
    api.problem("connections.create_connection", 422, "idempotency_key_reused", body=other, idempotency_key=key)

    # 429: the bank throttles (the sandbox is told to), and the problem says when to retry
    outcome = back_at_the_app(stack, log_in_at_bank(started.authorization_url))
    api.ok(
        "connections.complete_connection",
        "ConnectionSummary",
        BANK,
        body=m("CompleteConnectionRequest")(completion=outcome["completion"]),
    )
    with bank_fault(stack, fault="429", scope="aisp", bank=BANK, retry_after=30):
        response = python_client.api("accounts.list_accounts").sync_detailed(BANK, client=api.client)
    assert response.status_code == 429 and response.headers["retry-after"] == "30"
    assert isinstance(response.parsed, m("Problem")) and response.parsed.code == "bank_rate_limited"

    # 501: a bank that offers no identity says so, as a problem
    banks = api.ok("banks.list_banks", "ListBanksResponse").banks
    without = next(bank.bank_code for bank in banks if not bank.capabilities.identity)
    api.problem("accounts.get_identity", 501, "bank_feature_not_supported", without)


@contextmanager
def bank_fault(stack: RunningStack, **rule: Any) -> Iterator[None]:
    """A fault rule of the sandbox's admin API (``sandbox/admin.py``) for the block, removed after it."""
    with requests.Session() as admin:
        admin.trust_env = False
        admin.verify = str(stack.sandbox.ca_path)
        assert admin.post(f"{stack.sandbox.admin_url}/faults", json=rule, timeout=TIMEOUT).status_code == 201
        try:
            yield
        finally:
            admin.delete(f"{stack.sandbox.admin_url}/faults", timeout=TIMEOUT)
