"""Isolation between users (issue #8): no user can read, consent for or delete another user's connection, by any
route of docs/openapi.json.

Over real HTTP against the local stack: Alice is connected to 13807 as Marc (consented to everything) and to 10207 as
Léa; Bob to 13807 as Sophie (consented); Carol has no connection; Dave starts connections of his own. Bob and Carol
then call every per-user route against Alice's banks, account ids and cursor, replay Alice's callback, and Alice
tries Bob's cursor. Every attempt gets the documented refusal (or the caller's own data) and no answer holds anything
of the victim's: IBANs, account ids, connection ids, names, cursor. Afterwards Alice's connections are unchanged and
still work. The routes come from the document: one neither exercised here nor listed as not per-user fails the
suite. Counted in the reliability summary as ``isolation`` (one case per cross-user attempt).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from local.stack import RunningStack
from tests.e2e.test_journey import SEED_BALANCES, TIMEOUT, back_at_the_app, log_in_at_bank
from tests.reliability.stack_helpers import (
    BANK,
    LEA,
    LEA_ACCOUNTS,
    LEA_IBANS,
    MARC_ACCOUNTS,
    MARC_IBANS,
    SECOND_BANK,
    SOPHIE,
    SOPHIE_ACCOUNT,
    SOPHIE_IBAN,
    App,
    Connected,
    connect,
    consent_to_everything,
    documented_routes,
    local_stack,
    problem,
    raw_session,
)
from tests.reliability.tally import record

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SUITE: Final = "isolation"
ALICE, BOB, CAROL, DAVE = "iso-alice", "iso-bob", "iso-carol", "iso-dave"
BAKERY = "D1020702I0"  # 10207's second persona (sandbox/README.md)
# Every per-user route and the test that attacks it; the others, and why they are not per user.
EXERCISED: Final = {
    "GET /v1/connections": "test_the_connection_list_is_ones_own",
    "GET /v1/connections/{bank_code}": "test_nobody_reads_anothers_connection",
    "POST /v1/connections": "test_starting_a_connection_never_touches_anothers",
    "POST /v1/connections/{bank_code}/complete": "test_nobody_completes_anothers_login",
    "PUT /v1/connections/{bank_code}/consent": "test_nobody_consents_for_another",
    "GET /v1/connections/{bank_code}/accounts": "test_nobody_lists_anothers_accounts",
    "GET /v1/connections/{bank_code}/accounts/{account_id}/balances": "test_nobody_reads_anothers_balances",
    "GET /v1/connections/{bank_code}/accounts/{account_id}/transactions": "test_nobody_reads_anothers_transactions",
    "GET /v1/connections/{bank_code}/trusted-beneficiaries": "test_nobody_reads_anothers_beneficiaries",
    "GET /v1/connections/{bank_code}/identity": "test_nobody_reads_anothers_identity",
    "GET /v1/accounts": "test_all_accounts_are_ones_own",
    "GET /oauth/callback": "test_replaying_anothers_callback_connects_nobody",
    "DELETE /v1/connections/{bank_code}": "test_nobody_deletes_anothers_connection",
}
NOT_PER_USER: Final = {"GET /v1/banks": "the BPCE registry: the same answer for every user"}
NOT_FOUND: Final = {404: "connection_not_found"}
NOT_THEIRS: Final = {403: "account_not_consented", 404: "account_not_found"}
INVALID: Final = {400: "validation_error"}  # a cursor that does not open; IBANs the bank refuses


def balances(bank_code: str, account_id: str) -> str:
    return f"/v1/connections/{bank_code}/accounts/{quote(account_id, safe='')}/balances"


def transactions(bank_code: str, account_id: str) -> str:
    return f"/v1/connections/{bank_code}/accounts/{quote(account_id, safe='')}/transactions"


@dataclass
class World:
    """The stack and its users."""

    stack: RunningStack
    alice: Connected
    alice_second: Connected
    bob: Connected
    carol: App
    dave: App
    alice_cursor: str
    bob_cursor: str
    alice_before: list[dict[str, Any]]

    def alice_data(self) -> list[str]:
        """What nobody but Alice may ever see: her IBANs, account ids, connection ids, names and cursor."""
        ids = [self.alice.connection_id, self.alice_second.connection_id]
        return [*MARC_IBANS, *MARC_ACCOUNTS, *LEA_IBANS, *LEA_ACCOUNTS, *ids, "MALLOW", "MOREAU", self.alice_cursor]

    def bob_data(self) -> list[str]:
        return [SOPHIE_IBAN, SOPHIE_ACCOUNT, self.bob.connection_id, "DURAND", self.bob_cursor]

    def attempt(  # noqa: PLR0913 - one attempt, fully described
        self,
        caller: App | None,
        route: str,
        method: str,
        path: str,
        answers: dict[int, str | None],
        *,
        victim: str = ALICE,
        **kwargs: Any,
    ) -> requests.Response:
        """One cross-user attempt on ``route``: its status must be one of ``answers`` (status → problem code, or
        ``None`` for the caller's own data) and its body must hold nothing of the victim's."""
        assert route in EXERCISED, f"{route} is not in EXERCISED"
        http = caller.http if caller is not None else raw_session()  # a browser: no token
        response = http.request(method, self.stack.api_url + path, timeout=TIMEOUT, allow_redirects=False, **kwargs)
        record(SUITE, cases=1, server_errors=int(response.status_code >= 500))  # noqa: PLR2004
        assert response.status_code in answers, f"{method} {path}: {response.status_code} {response.text[:300]}"
        victim_data = self.alice_data() if victim == ALICE else self.bob_data()
        seen = [
            value for value in victim_data if value in response.text or value in response.headers.get("location", "")
        ]
        assert not seen, f"{method} {path} answered another user's data: {seen}"
        code = answers[response.status_code]
        if code is not None and response.headers.get("content-type", "").startswith("application/problem+json"):
            assert problem(response)["code"] == code
        return response


def first_cursor(app: App, account_id: str) -> str:
    page = app.call("GET", transactions(BANK, account_id))
    cursor: str = page["next_cursor"]
    assert cursor, page
    return cursor


@pytest.fixture(scope="module")
def world(state_dir) -> Iterator[World]:
    with local_stack(state_dir) as stack:
        alice = connect(stack, ALICE)
        consent_to_everything(alice.app, BANK, MARC_IBANS)
        alice_second = connect(stack, ALICE, bank_code=SECOND_BANK, identifier=LEA)
        bob = connect(stack, BOB, identifier=SOPHIE)
        consent_to_everything(bob.app, BANK, (SOPHIE_IBAN,))
        yield World(
            stack=stack,
            alice=alice,
            alice_second=alice_second,
            bob=bob,
            carol=App(stack.api_url, CAROL),
            dave=App(stack.api_url, DAVE),
            alice_cursor=first_cursor(alice.app, MARC_ACCOUNTS[0]),
            bob_cursor=first_cursor(bob.app, SOPHIE_ACCOUNT),
            alice_before=alice.app.call("GET", "/v1/connections")["connections"],
        )


def test_every_route_is_either_exercised_or_not_per_user():
    # Given the routes of the committed OpenAPI document
    routes = documented_routes()

    # Then each one is attacked here or explicitly not per user, and nothing listed is stale
    assert routes - EXERCISED.keys() - NOT_PER_USER.keys() == set(), "a new route: attack it in this file"
    assert EXERCISED.keys() | NOT_PER_USER.keys() <= routes
    assert not EXERCISED.keys() & NOT_PER_USER.keys()
    assert all(callable(globals().get(name)) for name in EXERCISED.values())


def test_the_connection_list_is_ones_own(world: World):
    route = "GET /v1/connections"
    # When Bob and Carol list their connections, Bob sees his only and Carol none
    listed = world.attempt(world.bob.app, route, "GET", "/v1/connections", {200: None}).json()["connections"]
    assert [(c["bank_code"], c["connection_id"]) for c in listed] == [(BANK, world.bob.connection_id)]
    assert world.attempt(world.carol, route, "GET", "/v1/connections", {200: None}).json() == {"connections": []}


def test_starting_a_connection_never_touches_anothers(world: World):
    route = "POST /v1/connections"
    # When Dave starts connections to both of Alice's banks
    for bank_code in (BANK, SECOND_BANK):
        body = {"bank_code": bank_code, "return_url": f"{world.stack.api_url}/"}
        started = world.attempt(world.dave, route, "POST", "/v1/connections", {201: None}, json=body).json()

        # Then they are his own, new, pending connections
        assert started["connection_id"] not in (world.alice.connection_id, world.alice_second.connection_id)
    assert {c["bank_code"]: c["status"] for c in world.dave.call("GET", "/v1/connections")["connections"]} == {
        BANK: "pending",
        SECOND_BANK: "pending",
    }


def test_nobody_reads_anothers_connection(world: World):
    route = "GET /v1/connections/{bank_code}"
    # Bob reads his own connection at the bank he shares with Alice, never hers
    own = world.attempt(world.bob.app, route, "GET", f"/v1/connections/{BANK}", {200: None}).json()
    assert own["connection_id"] == world.bob.connection_id
    # And where he (or Carol) has none, there is nothing
    for caller, bank_code in ((world.bob.app, SECOND_BANK), (world.carol, BANK), (world.carol, SECOND_BANK)):
        world.attempt(caller, route, "GET", f"/v1/connections/{bank_code}", NOT_FOUND)


def test_nobody_completes_anothers_login(world: World):
    route = "POST /v1/connections/{bank_code}/complete"
    invalid = {400: "invalid_completion"}
    # Given Dave's login at 10207 (as the bakery, not Léa: a new SCA of Léa's would revoke Alice's pair there),
    # authorized at the bank: his app holds a completion value
    body = {"bank_code": SECOND_BANK, "return_url": f"{world.stack.api_url}/"}
    started = world.dave.call("POST", "/v1/connections", json=body, expect=201)
    back = back_at_the_app(world.stack, log_in_at_bank(started["authorization_url"], identifier=BAKERY))
    assert back["status"] == "authorized"

    # When Carol, then Bob, try it (Carol first: the value is spent by that attempt), and anyone tries values that
    # are not theirs at Alice's banks
    path = f"/v1/connections/{SECOND_BANK}/complete"
    world.attempt(world.carol, route, "POST", path, invalid, victim=BOB, json={"completion": back["completion"]})
    world.attempt(world.bob.app, route, "POST", path, invalid, victim=BOB, json={"completion": back["completion"]})
    for caller, bank_code in ((world.bob.app, BANK), (world.carol, SECOND_BANK)):
        path = f"/v1/connections/{bank_code}/complete"
        world.attempt(caller, route, "POST", path, invalid, json={"completion": "x" * 43})

    # Then Dave's login was refused for everyone (its tokens revoked: he logs in again), and Carol and Bob have
    # nothing new; Dave's own value is spent
    dave = {c["bank_code"]: c for c in world.dave.call("GET", "/v1/connections")["connections"]}
    assert (dave[SECOND_BANK]["status"], dave[SECOND_BANK]["status_reason"]) == ("failed", "completion_rejected")
    world.dave.call(
        "POST", f"/v1/connections/{SECOND_BANK}/complete", json={"completion": back["completion"]}, expect=400
    )
    assert world.carol.call("GET", "/v1/connections")["connections"] == []


def test_nobody_consents_for_another(world: World):
    route = "PUT /v1/connections/{bank_code}/consent"
    marc = {"balances": list(MARC_IBANS), "transactions": list(MARC_IBANS), "psu_identity": True}
    lea = {"balances": list(LEA_IBANS), "transactions": list(LEA_IBANS), "psu_identity": True}
    # When Bob consents to Alice's IBANs at his own bank: the bank refuses them (not his accounts)
    body = {**marc, "trusted_beneficiaries": True}
    refused = world.attempt(world.bob.app, route, "PUT", f"/v1/connections/{BANK}/consent", INVALID, json=body)
    assert "bank refused" in problem(refused)["detail"]

    # And at Alice's other bank, or as Carol, there is no connection to consent for
    for caller, bank_code, consent in ((world.bob.app, SECOND_BANK, lea), (world.carol, BANK, marc)):
        path = f"/v1/connections/{bank_code}/consent"
        world.attempt(caller, route, "PUT", path, NOT_FOUND, json={**consent, "trusted_beneficiaries": False})
    body = {**lea, "trusted_beneficiaries": False}
    world.attempt(world.carol, route, "PUT", f"/v1/connections/{SECOND_BANK}/consent", NOT_FOUND, json=body)


def test_nobody_lists_anothers_accounts(world: World):
    route = "GET /v1/connections/{bank_code}/accounts"
    # When Bob lists the accounts at Alice's first bank, he gets his own (Sophie's) only
    own = world.attempt(world.bob.app, route, "GET", f"/v1/connections/{BANK}/accounts", {200: None}).json()
    assert SOPHIE_IBAN in [account["iban"] for account in own["accounts"]]

    # And elsewhere nobody but Alice has a connection
    for caller, bank_code in ((world.bob.app, SECOND_BANK), (world.carol, BANK), (world.carol, SECOND_BANK)):
        world.attempt(caller, route, "GET", f"/v1/connections/{bank_code}/accounts", NOT_FOUND)


def test_nobody_reads_anothers_balances(world: World):
    route = "GET /v1/connections/{bank_code}/accounts/{account_id}/balances"
    # When Bob asks his bank for Alice's accounts: they are not his
    for account_id in MARC_ACCOUNTS:
        world.attempt(world.bob.app, route, "GET", balances(BANK, account_id), NOT_THEIRS)

    # And at her other bank, or as Carol, there is no connection at all
    for account_id in LEA_ACCOUNTS:
        world.attempt(world.bob.app, route, "GET", balances(SECOND_BANK, account_id), NOT_FOUND)
    world.attempt(world.carol, route, "GET", balances(BANK, MARC_ACCOUNTS[0]), NOT_FOUND)
    world.attempt(world.carol, route, "GET", balances(SECOND_BANK, LEA_ACCOUNTS[0]), NOT_FOUND)


def test_nobody_reads_anothers_transactions(world: World):
    route = "GET /v1/connections/{bank_code}/accounts/{account_id}/transactions"
    alice_cursor = {"cursor": world.alice_cursor}
    # When Bob asks for Alice's accounts' transactions, with and without her cursor
    for account_id in MARC_ACCOUNTS:
        world.attempt(world.bob.app, route, "GET", transactions(BANK, account_id), NOT_THEIRS)
    path = transactions(BANK, MARC_ACCOUNTS[0])
    world.attempt(world.bob.app, route, "GET", path, INVALID, params=alice_cursor)
    world.attempt(world.bob.app, route, "GET", transactions(BANK, SOPHIE_ACCOUNT), INVALID, params=alice_cursor)
    world.attempt(world.carol, route, "GET", path, {**INVALID, **NOT_FOUND}, params=alice_cursor)
    for account_id in LEA_ACCOUNTS:
        world.attempt(world.bob.app, route, "GET", transactions(SECOND_BANK, account_id), NOT_FOUND)
    world.attempt(world.carol, route, "GET", transactions(SECOND_BANK, LEA_ACCOUNTS[0]), NOT_FOUND)

    # And when Alice replays Bob's cursor, on his account or hers
    bob_cursor = {"cursor": world.bob_cursor}
    for account_id in (SOPHIE_ACCOUNT, MARC_ACCOUNTS[0]):
        path = transactions(BANK, account_id)
        world.attempt(world.alice.app, route, "GET", path, INVALID, victim=BOB, params=bob_cursor)

    # Then the cursor still opens for its owner only
    assert world.alice.app.call("GET", transactions(BANK, MARC_ACCOUNTS[0]), params=alice_cursor)["transactions"]


def test_nobody_reads_anothers_beneficiaries(world: World):
    route = "GET /v1/connections/{bank_code}/trusted-beneficiaries"
    # Only 13807 offers trusted beneficiaries: Bob gets his own there (or none), Carol has no connection
    path = f"/v1/connections/{BANK}/trusted-beneficiaries"
    world.attempt(world.bob.app, route, "GET", path, {200: None, 403: "consent_required"})
    world.attempt(world.carol, route, "GET", path, NOT_FOUND)


def test_nobody_reads_anothers_identity(world: World):
    route = "GET /v1/connections/{bank_code}/identity"
    # When Bob reads the identity at Alice's first bank, it is his (Sophie's)
    identity = world.attempt(world.bob.app, route, "GET", f"/v1/connections/{BANK}/identity", {200: None}).json()
    assert "DURAND" in identity["full_name"]

    # And elsewhere there is no connection
    for caller, bank_code in ((world.bob.app, SECOND_BANK), (world.carol, BANK), (world.carol, SECOND_BANK)):
        world.attempt(caller, route, "GET", f"/v1/connections/{bank_code}/identity", NOT_FOUND)


def test_all_accounts_are_ones_own(world: World):
    route = "GET /v1/accounts"
    # Bob's accounts across banks are Sophie's at 13807; Carol has none
    bobs = world.attempt(world.bob.app, route, "GET", "/v1/accounts", {200: None}).json()
    assert {account["bank_code"] for account in bobs["accounts"]} == {BANK}
    assert SOPHIE_IBAN in [account["iban"] for account in bobs["accounts"]]
    assert world.attempt(world.carol, route, "GET", "/v1/accounts", {200: None}).json() == {
        "accounts": [],
        "errors": [],
    }


def test_replaying_anothers_callback_connects_nobody(world: World):
    route = "GET /oauth/callback"
    # When anyone's browser replays the bank's redirects that connected Alice (the state is spent)
    for connected in (world.alice, world.alice_second):
        path = connected.callback_url.removeprefix(world.stack.api_url)
        answer = world.attempt(None, route, "GET", path, {302: None})

        # Then it goes back to the app with an error, and connects nobody
        location = answer.headers["location"]
        assert parse_qs(urlsplit(location).query) == {"status": ["error"], "error": ["invalid_state"]}
    assert world.carol.call("GET", "/v1/connections")["connections"] == []


def test_nobody_deletes_anothers_connection(world: World):
    route = "DELETE /v1/connections/{bank_code}"
    # When Bob and Carol delete at Alice's banks where they have no connection
    for caller, bank_code in ((world.bob.app, SECOND_BANK), (world.carol, BANK), (world.carol, SECOND_BANK)):
        world.attempt(caller, route, "DELETE", f"/v1/connections/{bank_code}", NOT_FOUND)

    # And Bob deletes his own connection at the bank they share (his tokens revoked at the bank)
    world.attempt(world.bob.app, route, "DELETE", f"/v1/connections/{BANK}", {204: None})
    assert [c["status"] for c in world.bob.app.call("GET", "/v1/connections")["connections"]] == ["revoked"]


def test_alices_connections_are_intact_afterwards(world: World):
    # Then Alice's connections are exactly as before every attempt
    after = world.alice.app.call("GET", "/v1/connections")["connections"]
    keys = ("bank_code", "connection_id", "status", "consent")
    assert [{k: c[k] for k in keys} for c in after] == [{k: c[k] for k in keys} for c in world.alice_before]
    assert {c["status"] for c in after} == {"active"}

    # And they still work: balances, her cursor, her identity, her other bank
    alices = world.alice.app.call("GET", balances(BANK, MARC_ACCOUNTS[0]))["balances"]
    assert [b["amount"] for b in alices] == SEED_BALANCES
    page = world.alice.app.call("GET", transactions(BANK, MARC_ACCOUNTS[0]), params={"cursor": world.alice_cursor})
    assert page["transactions"]
    assert world.alice.app.call("GET", f"/v1/connections/{BANK}/identity")["full_name"] == "MALLOW MARC"
    second = world.alice.app.call("GET", f"/v1/connections/{SECOND_BANK}/accounts")["accounts"]
    assert [account["iban"] for account in second] == list(LEA_IBANS)
