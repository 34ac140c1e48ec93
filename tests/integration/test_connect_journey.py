"""The connect journey end to end: the connect and callback handlers, moto (DynamoDB, KMS, Secrets Manager) and the
offline 89C3 sandbox as the bank over real HTTPS with mTLS, persona Marc clicking through its login screens.

The callback event is ``events/oauth_callback/success.json`` with its placeholders replaced by the ``code`` and
``state`` the sandbox redirected the browser with (see events/oauth_callback/README.md).
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from aisp.errors import BankTokenInvalidError, ReauthRequiredError
from aisp.logic import services as wiring
from aisp.logic.oauth_callback import handle_callback
from aisp.logic.services import get_connection_services
from aisp.settings import load_settings
from aisp.stet.factory import clear_bank_clients, get_bank_client
from aisp.stet.gateway import StetBankGateway
from functions.connect import app as connect
from functions.oauth_callback import app as callback
from sandbox.server import RunningSandbox, SandboxConfig, start_sandbox
from tests.conftest import CONNECTIONS_TABLE, SECRET_NAME, STATES_TABLE, clear_gateway_caches
from tests.fakes import CountingBankGateway, serialize_dynamodb_writes
from tests.sandbox.helpers import MARC, OTP, flow_id

pytestmark = pytest.mark.integration

BANK = "13807"
API_DOMAIN = "api-id.execute-api.eu-west-3.amazonaws.com"
CALLBACK_URL = f"https://{API_DOMAIN}/oauth/callback"  # what the connect handler derives from the event's domain
RETURN_URL = "https://app.example.com/connections/done?screen=banks"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    config = SandboxConfig(
        port=0,
        screens_port=0,
        certs_dir=tmp_path_factory.mktemp("sandbox-certs"),
        admin=True,
        redirect_uris=(CALLBACK_URL,),
    )
    with start_sandbox(config) as running:
        yield running


@pytest.fixture
def admin(sandbox: RunningSandbox) -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(sandbox.ca_path)
    assert session.post(f"{sandbox.admin_url}/reset", timeout=5).status_code == 204
    yield session
    session.post(f"{sandbox.admin_url}/reset", timeout=5)
    session.close()


@pytest.fixture
def gateway(aws, sandbox: RunningSandbox, admin, monkeypatch) -> Iterator[Any]:
    """The deployed wiring pointed at the sandbox (BANK_ENVIRONMENT=local), its credentials as the secret, and the
    bank gateway wrapped to count code exchanges."""
    monkeypatch.setenv("BANK_ENVIRONMENT", "local")
    monkeypatch.setenv("BANK_BASE_URL_TEMPLATE", sandbox.api_origin + "/{bank_code}")
    monkeypatch.setenv("BANK_AUTHORIZE_URL_TEMPLATE", sandbox.screens_origin + "/{bank_code}")
    monkeypatch.setenv("BANK_CA_BUNDLE", str(sandbox.ca_path))
    monkeypatch.setenv("BANK_TIMEOUT_SECONDS", "5")
    aws.secrets.create_secret(Name=SECRET_NAME, SecretString=json.dumps(sandbox.credentials))
    clear_gateway_caches()
    services = dataclasses.replace(get_connection_services(), bank=CountingBankGateway(StetBankGateway()))
    original = wiring.get_connection_services
    wiring.get_connection_services = lambda: services
    yield services
    wiring.get_connection_services = original
    clear_gateway_caches()


# ----------------------------------------------------------------------------------------------------------------


def _event(load_event, name: str, *, sub: str = "user-marc", **query: str) -> dict[str, Any]:
    event = load_event(name)
    if sub != "user-marc":
        event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = sub
    if query:
        event["queryStringParameters"] = query
        event["rawQueryString"] = urlencode(query)
    return event


def start(load_event, lambda_context, *, sub: str = "user-marc") -> dict[str, Any]:
    """POST /v1/connections through the connect handler."""
    response = connect.lambda_handler(_event(load_event, "connect/create_connection.json", sub=sub), lambda_context)
    assert response["statusCode"] == 201, response["body"]
    return json.loads(response["body"])


def login_at_bank(authorization_url: str, *, decision: str = "accept", identifier: str = MARC) -> dict[str, str]:
    """Marc's browser at the sandbox's screens: identifier, OTP, decision; returns the redirect's query."""
    browser = requests.Session()
    browser.trust_env = False
    with browser:
        page = browser.get(authorization_url, allow_redirects=False, timeout=5)
        assert page.status_code == 200, page.text
        screens = authorization_url.split("?", 1)[0]
        flow = flow_id(page.text)
        assert browser.post(screens, data={"flow": flow, "identifier": identifier}, timeout=5).status_code == 200
        assert browser.post(screens, data={"flow": flow, "otp": OTP}, timeout=5).status_code == 200
        decided = browser.post(screens, data={"flow": flow, "decision": decision}, allow_redirects=False, timeout=5)
    assert decided.status_code == 302, decided.text
    location = decided.headers["Location"]
    assert location.startswith(CALLBACK_URL + "?")  # the bank sends the browser to our callback
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def call_back(load_event, lambda_context, name: str = "oauth_callback/success.json", **query: str) -> dict[str, Any]:
    """GET /oauth/callback through the callback handler, with the bank's query in place of the placeholders."""
    return callback.lambda_handler(_event(load_event, name, **query), lambda_context)


def redirect_query(response: dict[str, Any]) -> dict[str, str]:
    assert response["statusCode"] == 302, response.get("body")
    assert response["headers"]["Cache-Control"] == "no-store"
    assert response["headers"]["Referrer-Policy"] == "no-referrer"
    location = response["headers"]["Location"]
    assert location.startswith("https://app.example.com/connections/done?")
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def list_connections(load_event, lambda_context, *, sub: str = "user-marc") -> list[dict[str, Any]]:
    response = connect.lambda_handler(_event(load_event, "connect/list_connections.json", sub=sub), lambda_context)
    assert response["statusCode"] == 200
    return json.loads(response["body"])


def closed_port() -> int:
    """A local TCP port with nothing listening (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def all_raw_values(aws) -> str:
    """Every attribute of every connection item, decoded (bytes as latin-1 and utf-8), in one string."""
    parts: list[str] = []
    for item in aws.dynamodb.scan(TableName=CONNECTIONS_TABLE)["Items"]:
        for value in item.values():
            for raw in value.values():
                if isinstance(raw, bytes):
                    parts += [raw.decode("latin-1"), raw.decode("utf-8", "replace"), raw.hex()]
                else:
                    parts.append(json.dumps(raw))
    return "\n".join(parts)


def connect_marc(load_event, lambda_context) -> tuple[dict[str, Any], dict[str, str]]:
    started = start(load_event, lambda_context)
    bank_redirect = login_at_bank(started["authorization_url"])
    response = call_back(load_event, lambda_context, code=bank_redirect["code"], state=bank_redirect["state"])
    assert redirect_query(response)["status"] == "connected"
    return started, bank_redirect


# ----------------------------------------------------------------------------------------------------------------


def test_marc_connects_and_the_table_holds_no_plaintext_token(gateway, aws, load_event, lambda_context):
    # Given Marc starting a connection to B.P Grand Ouest
    started = start(load_event, lambda_context)
    assert started["bank_code"] == BANK
    assert parse_qs(urlsplit(started["authorization_url"]).query)["redirect_uri"] == [CALLBACK_URL]

    # When he logs in at the bank (identifier, OTP, accept) and the bank redirects his browser to our callback
    bank_redirect = login_at_bank(started["authorization_url"])
    response = call_back(load_event, lambda_context, code=bank_redirect["code"], state=bank_redirect["state"])

    # Then his browser goes back to the app, connected, with nothing of the bank's in the URL
    assert redirect_query(response) == {
        "screen": "banks",
        "status": "connected",
        "bank_code": BANK,
        "connection_id": started["connection_id"],
    }
    assert bank_redirect["code"] not in response["headers"]["Location"]
    assert gateway.bank.counts["exchange_code"] == 1

    # And the tokens work at the bank, but no attribute of any stored item contains them
    connection, tokens = gateway.connections.get_with_tokens("user-marc", BANK)
    access, refresh = tokens.access_token.get_secret_value(), tokens.refresh_token.get_secret_value()
    assert get_bank_client(BANK).get_accounts(access, psu=None).accounts
    stored = all_raw_values(aws)
    assert access not in stored and refresh not in stored
    assert access.encode().hex() not in stored and refresh.encode().hex() not in stored

    # And GET /v1/connections shows the connection ACTIVE with its dates
    (listed,) = list_connections(load_event, lambda_context)
    assert listed["connection_id"] == started["connection_id"]
    assert listed["status"] == "ACTIVE"
    access_expires_at = datetime.fromisoformat(listed["access_expires_at"])
    reauth_due_at = datetime.fromisoformat(listed["reauth_due_at"])
    now = datetime.now(UTC)
    assert 3500 <= (access_expires_at - now).total_seconds() <= 3600  # the sandbox's expires_in
    assert 89 <= (reauth_due_at - now).days <= 90  # 13807's 90 days
    assert connection.refresh_issued_at == connection.connected_at


def test_marc_refuses_at_the_bank(gateway, load_event, lambda_context):
    started = start(load_event, lambda_context)

    bank_redirect = login_at_bank(started["authorization_url"], decision="refuse")
    assert bank_redirect["error"] == "access_denied"
    response = call_back(load_event, lambda_context, "oauth_callback/denied.json", **bank_redirect)

    assert redirect_query(response) == {"screen": "banks", "status": "error", "error": "access_denied"}
    assert gateway.bank.counts.get("exchange_code", 0) == 0
    (listed,) = list_connections(load_event, lambda_context)
    assert listed["status"] == "PENDING"


def test_a_replayed_callback_is_invalid_and_exchanges_nothing(gateway, load_event, lambda_context):
    # Given a completed journey
    _, bank_redirect = connect_marc(load_event, lambda_context)
    _, tokens = gateway.connections.get_with_tokens("user-marc", BANK)

    # When the same callback URL is loaded again (back button, leaked URL)
    response = call_back(load_event, lambda_context, code=bank_redirect["code"], state=bank_redirect["state"])

    # Then it ends at invalid_state, the code was exchanged once, and the stored tokens still work at the bank
    # (a second exchange of the code would have made the sandbox revoke them)
    assert redirect_query(response)["error"] == "invalid_state"
    assert gateway.bank.counts["exchange_code"] == 1
    assert get_bank_client(BANK).get_accounts(tokens.access_token.get_secret_value(), psu=None).accounts


def test_a_forged_state_gets_the_invalid_link_page(gateway, load_event, lambda_context):
    response = call_back(load_event, lambda_context, "oauth_callback/invalid_state.json")

    assert response["statusCode"] == 400
    assert response["headers"]["X-Error-Code"] == "invalid_state"
    assert gateway.bank.counts.get("exchange_code", 0) == 0


def test_concurrent_double_callbacks_exchange_the_code_once(gateway, load_event, lambda_context):
    # Given Marc's bank redirect, delivered twice at the same moment (two Lambda containers in production; here two
    # threads on the use case itself, since a resolver instance serves one event at a time)
    started = start(load_event, lambda_context)
    bank_redirect = login_at_bank(started["authorization_url"])
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def deliver() -> None:
        barrier.wait()
        result = handle_callback(state=bank_redirect["state"], code=bank_redirect["code"], error=None)
        outcomes.append(result.outcome)

    with serialize_dynamodb_writes():
        threads = [threading.Thread(target=deliver) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # Then exactly one token exchange happened, and the connection works
    assert sorted(outcomes) == ["connected", "invalid_state"]
    assert gateway.bank.counts["exchange_code"] == 1
    _, tokens = gateway.connections.get_with_tokens("user-marc", BANK)
    assert get_bank_client(BANK).get_accounts(tokens.access_token.get_secret_value(), psu=None).accounts


def test_an_expired_state_is_refused_before_reaching_the_bank(gateway, aws, load_event, lambda_context):
    # Given a journey whose state is older than its 10 minutes by the time the callback arrives
    started = start(load_event, lambda_context)
    bank_redirect = login_at_bank(started["authorization_url"])
    (item,) = aws.dynamodb.scan(TableName=STATES_TABLE)["Items"]
    aws.dynamodb.update_item(
        TableName=STATES_TABLE,
        Key={"state_hash": item["state_hash"]},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(datetime.now(UTC).timestamp()) - 1)}},
    )

    # When the callback comes
    response = call_back(
        load_event,
        lambda_context,
        "oauth_callback/expired_state.json",
        code=bank_redirect["code"],
        state=bank_redirect["state"],
    )

    # Then state_expired, and the code was never sent to the bank
    assert redirect_query(response)["error"] == "state_expired"
    assert gateway.bank.counts.get("exchange_code", 0) == 0
    assert list_connections(load_event, lambda_context)[0]["status"] == "PENDING"


@pytest.mark.parametrize("outage", ["503", "connection_refused"])
def test_bank_down_during_the_exchange(gateway, admin, sandbox, monkeypatch, load_event, lambda_context, outage):
    # Given a started journey and a bank whose token endpoint is down when the callback arrives
    started = start(load_event, lambda_context)
    bank_redirect = login_at_bank(started["authorization_url"])
    if outage == "503":
        fault = {"fault": "503", "scope": "token", "bank": BANK, "times": 1}
        assert admin.post(f"{sandbox.admin_url}/faults", json=fault, timeout=5).status_code == 201
    else:
        monkeypatch.setenv("BANK_BASE_URL_TEMPLATE", f"https://127.0.0.1:{closed_port()}/{{bank_code}}")
        load_settings.cache_clear()
        clear_bank_clients()

    # When the callback comes
    response = call_back(load_event, lambda_context, code=bank_redirect["code"], state=bank_redirect["state"])

    # Then bank_unavailable, one attempt, and no record is ACTIVE or holds tokens
    assert redirect_query(response)["error"] == "bank_unavailable"
    assert gateway.bank.counts["exchange_code"] == 1
    connection, tokens = gateway.connections.get_with_tokens("user-marc", BANK)
    assert connection.status.value == "PENDING" and tokens is None


def test_a_code_the_bank_refuses_is_token_exchange_failed(gateway, load_event, lambda_context):
    started = start(load_event, lambda_context)
    bank_redirect = login_at_bank(started["authorization_url"])

    response = call_back(load_event, lambda_context, code="not-the-code-the-bank-issued", state=bank_redirect["state"])

    assert redirect_query(response)["error"] == "token_exchange_failed"
    assert list_connections(load_event, lambda_context)[0]["status"] == "PENDING"


def test_delete_revokes_at_the_bank_and_forgets_the_tokens(gateway, aws, load_event, lambda_context):
    # Given Marc's active connection and, on the side, the tokens it holds
    started, _ = connect_marc(load_event, lambda_context)
    _, tokens = gateway.connections.get_with_tokens("user-marc", BANK)
    access, refresh = tokens.access_token.get_secret_value(), tokens.refresh_token.get_secret_value()

    # When another user tries to delete it, then Marc deletes it
    as_eve = connect.lambda_handler(
        _event(load_event, "connect/delete_connection.json", sub="user-eve"), lambda_context
    )
    response = connect.lambda_handler(load_event("connect/delete_connection.json"), lambda_context)

    # Then Eve got 404 and Marc 204; the bank revoked the tokens: the old ones are refused
    assert as_eve["statusCode"] == 404
    assert json.loads(as_eve["body"])["code"] == "connection_not_found"
    assert response["statusCode"] == 204
    assert gateway.bank.counts["revoke"] == 1
    client = get_bank_client(BANK)
    with pytest.raises(BankTokenInvalidError):
        client.get_accounts(access, psu=None)
    with pytest.raises(ReauthRequiredError):
        client.refresh(refresh)

    # And the record is REVOKED, without tokens, out of the refresh index, purged later
    (listed,) = list_connections(load_event, lambda_context)
    assert listed["status"] == "REVOKED" and listed["connection_id"] == started["connection_id"]
    item = aws.raw_connection("user-marc", BANK)
    assert not {"tokens", "refresh_shard", "refresh_due_at"} & set(item)
    assert int(item["purge_at"]["N"]) > int(datetime.now(UTC).timestamp())
    assert access not in all_raw_values(aws)


def test_marc_reconnects_after_deleting(gateway, load_event, lambda_context):
    started, _ = connect_marc(load_event, lambda_context)
    assert connect.lambda_handler(load_event("connect/delete_connection.json"), lambda_context)["statusCode"] == 204

    again, _ = connect_marc(load_event, lambda_context)

    assert again["connection_id"] == started["connection_id"]
    (listed,) = list_connections(load_event, lambda_context)
    assert listed["status"] == "ACTIVE"
