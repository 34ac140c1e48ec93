"""`sam local start-api` in front of the containers: the bank's browser redirect, and the JWT routes' documented 401.

SAM CLI serves the template's HTTP API on a free loopback port and runs each route's function in its container.
It does not run HTTP API JWT authorizers (docs/sam-local.md): it passes no claims, so every route that needs the
user answers 401, from our own handler, even with a token the stack's API accepts. ``/oauth/callback`` takes no
JWT, so the whole connection can end there: the offline bank's real code and state, exchanged from the container.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.containers.conftest import USER, ensure_connected, sam_server
from tests.containers.sam import SamServer
from tests.e2e.test_journey import TIMEOUT, App, complete, log_in_at_bank
from tests.reliability.stack_helpers import BANK, PROBLEM

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

FORGED_STATE = "code=anything&state=forged-state-that-matches-nothing-000000000"  # events/oauth_callback/invalid_state
USER_ROUTES = ["/v1/connections", "/v1/accounts", f"/v1/connections/{BANK}/accounts"]


@pytest.fixture(scope="module")
def start_api(lambda_image, built, env_file, logs, janitor) -> Iterator[SamServer]:
    """`sam local start-api --config-env local` on a free port, a container per function on first use."""
    log = janitor.watch(logs / "start-api.log")
    with sam_server("start-api", warm="LAZY", image=lambda_image, template=built, env_file=env_file, log=log) as up:
        yield up


def get(url: str, **kwargs) -> requests.Response:
    """One GET, redirects not followed, with time for a container's cold start."""
    return requests.get(url, allow_redirects=False, timeout=max(TIMEOUT, 120), **kwargs)


def test_a_connection_completes_at_start_apis_oauth_callback(marc, start_api):
    # Given Marc starting a connection at the stack's API and logging in at the offline bank's screens
    app = App(marc.api_url, USER)
    started = app.call(
        "POST", "/v1/connections", json={"bank_code": BANK, "return_url": f"{marc.api_url}/"}, expect=201
    )
    redirect = urlsplit(log_in_at_bank(started["authorization_url"]))

    # When the bank's redirect (its code and our state) reaches /oauth/callback of sam local start-api
    answer = get(f"{start_api.url}{redirect.path}?{redirect.query}")

    # Then the callback's container exchanged the code at the bank and sends the browser back, authorized
    assert answer.status_code == 302, (answer.status_code, answer.text, start_api.tail())
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == marc.api_url
    outcome = {name: values[0] for name, values in parse_qs(location.query).items()}
    assert outcome["status"] == "authorized"
    # And the app completes it with the one-time value the container handed out
    complete(app, outcome)
    (connection,) = [c for c in app.call("GET", "/v1/connections")["connections"] if c["bank_code"] == BANK]
    assert (connection["connection_id"], connection["status"]) == (started["connection_id"], "active")
    # And the state was single use in the container too: the same redirect again is refused
    again = urlsplit(get(f"{start_api.url}{redirect.path}?{redirect.query}").headers.get("location", ""))
    assert parse_qs(again.query).get("status") not in (["connected"], ["authorized"])


def test_a_forged_state_gets_the_same_page_from_start_api_as_from_the_stack(marc, start_api):
    # When a callback with a state that matches nothing reaches both APIs
    container = get(f"{start_api.url}/oauth/callback?{FORGED_STATE}")
    oracle = get(f"{marc.api_url}/oauth/callback?{FORGED_STATE}")

    # Then the same refusal: status, media type and page
    assert container.status_code == oracle.status_code == 400
    assert container.headers["content-type"] == oracle.headers["content-type"]
    assert container.text == oracle.text


@pytest.mark.parametrize("path", USER_ROUTES)
def test_jwt_routes_answer_401_under_start_api_even_with_a_valid_token(marc, start_api, path):
    # Given Marc's token, which the stack's own API (with its JWT authorizer) accepts
    ensure_connected(marc)
    headers = {"Authorization": f"Bearer {marc.token(USER)}"}
    assert get(f"{marc.api_url}{path}", headers=headers).status_code == 200

    # When the same request goes to sam local start-api, which runs no JWT authorizer
    answer = get(f"{start_api.url}{path}", headers=headers)

    # Then our handler, given no claims, answers 401 (never trusting the unverified header)
    assert answer.status_code == 401, (answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert answer.json()["code"] == "unauthenticated"


def test_the_bank_list_needs_no_user_so_start_api_serves_it(marc, start_api):
    # Given GET /v1/banks, behind the JWT authorizer but the same for every user
    headers = {"Authorization": f"Bearer {marc.token(USER)}"}

    # When it goes to sam local start-api and to the stack's API
    container = get(f"{start_api.url}/v1/banks", headers=headers)
    oracle = get(f"{marc.api_url}/v1/banks", headers=headers)

    # Then the same list from both (the one route besides the callback that works under start-api)
    assert container.status_code == oracle.status_code == 200
    assert container.json() == oracle.json()
