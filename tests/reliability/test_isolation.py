"""Isolation between users (issue #8): no user can read, consent for or delete another user's connection, by any
route of docs/openapi.json.

Over real HTTP against the local stack: Alice is connected to 13807 as Marc (consented to everything) and to 10207 as
Léa; Bob to 13807 as Sophie (consented); Carol has no connection; Dave starts connections of his own. Bob and Carol
then call every per-user route against Alice's banks, account ids and cursor, replay Alice's callback, and Alice
tries Bob's cursor. Every attempt gets the documented refusal (or the caller's own data) and no answer holds anything
of the victim's: IBANs, account ids, connection ids, names, cursor. Afterwards Alice's connections are unchanged and
still work. The routes come from the document: one neither exercised here nor listed as not per-user fails the
suite.

Server tokens (the fintech's backend, docs/accounts.md "Unattended access") act for any user of the fintech, by
design, but only for the one named in ``Aisp-User``: without it every read is refused naming the header (the
token's own ``sub`` is never taken for a user, even when it spells one), a user token naming another user there is
refused and gets nothing of theirs, and a server token on a route only the user may call is ``403
user_token_required`` and changes nothing. The sync feed is read after the scheduled sync has filled Alice's and
Bob's, by their apps and by the backend naming each of them (and Carol, and nobody), with each other's cursors.
Counted in the reliability summary as ``isolation`` (one case per cross-user attempt).
"""

from __future__ import annotations

import json
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
    DOCS,
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
    "GET /v1/connections/{bank_code}/quota": "test_nobody_reads_anothers_quota",
    "GET /v1/connections/{bank_code}/transactions/sync": "test_nobody_reads_anothers_sync_feed",
}
NOT_PER_USER: Final = {"GET /v1/banks": "the BPCE registry: the same answer for every user"}
NOT_FOUND: Final = {404: "connection_not_found"}
NOT_THEIRS: Final = {403: "account_not_consented", 404: "account_not_found"}
INVALID: Final = {400: "validation_error"}  # a cursor that does not open; IBANs the bank refuses
USER_ONLY: Final = {403: "user_token_required"}
AISP_USER: Final = "Aisp-User"
SYNC_FUNCTION: Final = "AccountSyncFunction"


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
        caller: App | Backend | None,
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


class Backend:
    """The fintech's backend: a server token (``sub`` = its client id, the unattended scope) from the local issuer."""

    def __init__(self, stack: RunningStack, client: str = "iso-backend") -> None:
        self.http = raw_session()
        self.http.headers["Authorization"] = f"Bearer {stack.server_token(client)}"


def routes_by_security() -> tuple[list[str], list[str]]:
    """The documented routes a server token may call (reads), and those only the user's own app may call."""
    document = json.loads(DOCS.read_text(encoding="utf-8"))
    reads, user_only = [], []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            schemes = {name for requirement in operation.get("security", []) for name in requirement}
            if "serverToken" in schemes:
                reads.append(f"{method.upper()} {path}")
            elif "bearerAuth" in schemes and path != "/v1/banks":
                user_only.append(f"{method.upper()} {path}")
    return sorted(reads), sorted(user_only)


def concrete(route: str, bank_code: str = BANK, account_id: str = MARC_ACCOUNTS[0]) -> tuple[str, str]:
    """``(method, path)`` of a documented route, for one bank and account."""
    method, template = route.split(" ", 1)
    return method, template.format(bank_code=bank_code, account_id=quote(account_id, safe=""))


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


def user_only_body(route: str, api_url: str) -> dict[str, Any]:
    """A valid body for a user-only route (so that only the caller's kind can refuse it)."""
    bodies: dict[str, dict[str, Any]] = {
        "POST /v1/connections": {"bank_code": BANK, "return_url": f"{api_url}/"},
        "POST /v1/connections/{bank_code}/complete": {"completion": "x" * 43},
        "PUT /v1/connections/{bank_code}/consent": {
            "balances": [],
            "transactions": [],
            "psu_identity": False,
            "trusted_beneficiaries": False,
        },
    }
    return {"json": bodies[route]} if route in bodies else {}


def names_the_header(response: requests.Response) -> None:
    assert [error["field"] for error in problem(response).get("errors", [])] == [AISP_USER], response.text


def test_nobody_reads_anothers_quota(world: World):
    route = "GET /v1/connections/{bank_code}/quota"
    path = f"/v1/connections/{BANK}/quota"
    # Given Alice's counter at 13807 used once by the backend, reading her balances without her
    backend = Backend(world.stack)
    read = backend.http.get(
        world.stack.api_url + balances(BANK, MARC_ACCOUNTS[0]), headers={AISP_USER: ALICE}, timeout=TIMEOUT
    )
    assert read.status_code == 200, read.text
    assert read.headers["ratelimit"].startswith('"unattended";r=3;')
    alices = world.attempt(backend, route, "GET", path, {200: None}, victim=BOB, headers={AISP_USER: ALICE}).json()
    assert [(c["method"], c["account_id"], c["used"]) for c in alices["usage"]] == [("balances", MARC_ACCOUNTS[0], 1)]

    # When Bob and Carol read the quota at Alice's banks with their own tokens, and the backend reads Bob's
    for caller, bank_code in ((world.bob.app, BANK), (world.bob.app, SECOND_BANK), (world.carol, BANK)):
        answer = world.attempt(caller, route, "GET", f"/v1/connections/{bank_code}/quota", {200: None}).json()

        # Then each sees their own counters only: none
        assert answer["usage"] == []
    assert world.attempt(backend, route, "GET", path, {200: None}, headers={AISP_USER: BOB}).json()["usage"] == []


@pytest.mark.timeout(360)  # the sync of three connections' whole histories through moto
def test_nobody_reads_anothers_sync_feed(world: World):
    route = "GET /v1/connections/{bank_code}/transactions/sync"
    path = f"/v1/connections/{BANK}/transactions/sync"
    # Given the scheduled sync run now: Alice's and Bob's feeds hold their transactions (a leak cannot hide in an empty
    # feed)
    with raw_session() as local:
        ran = local.post(f"{world.stack.api_url}/_local/schedules/{SYNC_FUNCTION}", json={"due_now": True}, timeout=300)
    assert ran.status_code == 200 and (ran.json()["synced"], ran.json()["failed"]) == (3, 0), ran.text  # noqa: PLR2004
    alice_feed, bob_feed = world.alice.app.call("GET", path), world.bob.app.call("GET", path)
    assert alice_feed["added"] and {tx["account_id"] for tx in alice_feed["added"]} <= set(MARC_ACCOUNTS)
    assert bob_feed["added"] and {tx["account_id"] for tx in bob_feed["added"]} == {SOPHIE_ACCOUNT}
    alice_cursor, bob_cursor = alice_feed["next_cursor"], bob_feed["next_cursor"]

    # When Bob reads the feed at Alice's banks, with and without her cursor, and Carol (no connection) too
    own = world.attempt(world.bob.app, route, "GET", path, {200: None}).json()
    assert own["added"] == bob_feed["added"]  # his own
    world.attempt(world.bob.app, route, "GET", path, INVALID, params={"cursor": alice_cursor})
    world.attempt(world.bob.app, route, "GET", f"/v1/connections/{SECOND_BANK}/transactions/sync", NOT_FOUND)
    world.attempt(world.carol, route, "GET", path, NOT_FOUND)
    world.attempt(world.carol, route, "GET", path, {**INVALID, **NOT_FOUND}, params={"cursor": alice_cursor})
    # And when Alice replays Bob's cursor
    world.attempt(world.alice.app, route, "GET", path, INVALID, victim=BOB, params={"cursor": bob_cursor})

    # When the backend's server token names Bob, Alice, Carol or nobody
    backend = Backend(world.stack)
    bobs = world.attempt(backend, route, "GET", path, {200: None}, headers={AISP_USER: BOB}).json()
    alices = world.attempt(backend, route, "GET", path, {200: None}, victim=BOB, headers={AISP_USER: ALICE}).json()
    world.attempt(backend, route, "GET", path, NOT_FOUND, headers={AISP_USER: CAROL})
    names_the_header(world.attempt(backend, route, "GET", path, INVALID))
    # Then it reads the feed of the user it names, and only theirs
    assert bobs["added"] == bob_feed["added"] and alices["added"] == alice_feed["added"]
    # And a cursor opens only for the user it was given to, whoever reads for them
    world.attempt(backend, route, "GET", path, INVALID, headers={AISP_USER: BOB}, params={"cursor": alice_cursor})
    params = {"cursor": bob_cursor}
    world.attempt(backend, route, "GET", path, INVALID, victim=BOB, headers={AISP_USER: ALICE}, params=params)
    # And a server token whose client id spells Alice's user id, naming Bob, reads Bob's feed, not hers
    spelled = Backend(world.stack, client=ALICE)
    assert (
        world.attempt(spelled, route, "GET", path, {200: None}, headers={AISP_USER: BOB}).json()["added"]
        == own["added"]
    )

    # Then each cursor still opens for its owner, through the user's app and the backend alike
    assert "added" in world.alice.app.call("GET", path, params={"cursor": alice_cursor})
    later = world.attempt(
        backend,
        route,
        "GET",
        path,
        {200: None},
        victim=BOB,
        headers={AISP_USER: ALICE},
        params={"cursor": alice_cursor},
    )
    assert {tx["account_id"] for tx in later.json()["added"]} <= set(MARC_ACCOUNTS)


def test_a_server_token_acts_only_for_the_user_it_names(world: World):
    reads, _ = routes_by_security()
    # Given the backend's server token, whose client id happens to spell Alice's user id
    backend = Backend(world.stack, client=ALICE)
    for route in reads:
        method, path = concrete(route)
        # When it reads at Alice's bank and account without naming a user
        # Then it is refused, naming the header: its own sub is never taken for a user
        names_the_header(world.attempt(backend, route, method, path, INVALID))

        # And naming Carol (no connection) it gets Carol's nothing, never Alice's data
        world.attempt(backend, route, method, path, {200: None, **NOT_FOUND}, headers={AISP_USER: CAROL})
    # And naming Bob it lists Bob's connection only
    listed = world.attempt(
        backend, "GET /v1/connections", "GET", "/v1/connections", {200: None}, headers={AISP_USER: BOB}
    ).json()["connections"]
    assert [c["connection_id"] for c in listed] == [world.bob.connection_id]


def test_a_user_token_never_acts_for_another(world: World):
    reads, user_only = routes_by_security()
    # When Bob's app names Alice in Aisp-User, on every route a user token may call
    for route in reads + user_only:
        method, path = concrete(route)
        body = user_only_body(route, world.stack.api_url)
        answer = world.attempt(world.bob.app, route, method, path, INVALID, headers={AISP_USER: ALICE}, **body)

        # Then it is refused naming the header (a user acts only for themselves), and gets nothing of Alice's
        names_the_header(answer)
    # And Bob's own connection is as it was (nothing started, consented or deleted)
    assert [c["status"] for c in world.bob.app.call("GET", "/v1/connections")["connections"]] == ["active"]


def test_a_server_token_changes_nothing_only_the_user_may(world: World):
    _, user_only = routes_by_security()
    backend = Backend(world.stack)
    # When the backend calls every route only the user's own app may call, for Alice and for nobody
    for route in user_only:
        method, path = concrete(route)
        body = user_only_body(route, world.stack.api_url)
        for headers in ({AISP_USER: ALICE}, {}):
            # Then each is 403 user_token_required (Alice's connections stay as they are: the last test)
            world.attempt(backend, route, method, path, USER_ONLY, headers=headers, **body)


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
