"""The connect journey end to end: the connect and callback handlers, moto (DynamoDB, KMS, Secrets Manager) and the
offline 89C3 sandbox as the bank over real HTTPS with mTLS, persona Marc clicking through its login screens.

The callback event is ``events/oauth_callback/success.json`` with its placeholders replaced by the ``code`` and
``state`` the sandbox redirected the browser with (see events/oauth_callback/README.md).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from aisp.errors import BankTokenInvalidError, ReauthRequiredError
from aisp.logic.oauth_callback import handle_callback
from aisp.settings import load_settings
from aisp.stet.factory import clear_bank_clients, get_bank_client
from functions.connect import app as connect
from tests.conftest import STATES_TABLE
from tests.fakes import serialize_dynamodb_writes
from tests.integration.journey import (
    BANK,
    CALLBACK_URL,
    all_raw_values,
    call_back,
    closed_port,
    connect_marc,
    list_connections,
    login_at_bank,
    redirect_query,
    start,
)
from tests.integration.journey import event as _event

pytestmark = pytest.mark.integration


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


def test_the_login_link_carries_a_pkce_challenge_and_the_table_no_verifier(gateway, aws, load_event, lambda_context):
    started = start(load_event, lambda_context)

    query = parse_qs(urlsplit(started["authorization_url"]).query)
    (item,) = aws.dynamodb.scan(TableName=STATES_TABLE)["Items"]

    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    # The verifier is sealed with the state: stored as an opaque blob, the state itself only as its hash
    assert set(item["code_verifier"]) == {"B"}
    assert query["state"][0] not in json.dumps(item, default=str)


def test_a_stolen_code_injected_with_another_state_gets_no_token(gateway, load_event, lambda_context):
    # Given Marc's login at the bank, whose code an attacker intercepts before Marc's browser reaches the callback
    victim = start(load_event, lambda_context)
    stolen = login_at_bank(victim["authorization_url"])
    # And the attacker's own journey, whose state (and so whose PKCE verifier) the attacker holds
    attacker = start(load_event, lambda_context, sub="user-mallory")
    attacker_state = parse_qs(urlsplit(attacker["authorization_url"]).query)["state"][0]

    # When the attacker delivers the stolen code with their own state (RFC 9700 §4.5)
    injected = call_back(load_event, lambda_context, code=stolen["code"], state=attacker_state)

    # Then the bank refuses the exchange (the code is bound to Marc's challenge): the attacker gets nothing
    assert redirect_query(injected)["error"] == "token_exchange_failed"
    assert gateway.bank.counts["exchange_code"] == 1
    mallory, tokens = gateway.connections.get_with_tokens("user-mallory", BANK)
    assert tokens is None and mallory.status.value != "ACTIVE"

    # And Marc's own callback still connects him: the refused attempt did not burn his code
    response = call_back(load_event, lambda_context, code=stolen["code"], state=stolen["state"])
    assert redirect_query(response)["status"] == "connected"
