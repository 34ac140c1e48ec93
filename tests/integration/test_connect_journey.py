"""The connect journey end to end: the connect and callback handlers, moto (DynamoDB, KMS, Secrets Manager) and the
offline 89C3 sandbox as the bank over real HTTPS with mTLS, persona Marc clicking through its login screens.

The callback event is ``events/oauth_callback/success.json`` with its placeholders replaced by the ``code`` and
``state`` the sandbox redirected the browser with (see events/oauth_callback/README.md); the completion is
``events/connect/complete_connection.json`` with the ``completion`` the callback sent the app back with.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from aisp import wiring
from aisp.errors import BankTokenInvalidError, ReauthRequiredError
from aisp.logic.oauth_callback import completion_hash, handle_callback
from aisp.settings import load_settings
from functions.accounts import app as accounts
from functions.connect import app as connect
from tests.conftest import CONNECTIONS_TABLE, STATES_TABLE
from tests.fakes import serialize_dynamodb_writes
from tests.integration.journey import (
    BANK,
    CALLBACK_URL,
    all_raw_values,
    call_back,
    closed_port,
    complete,
    connect_marc,
    list_connections,
    login_at_bank,
    redirect_query,
    start,
)
from tests.integration.journey import event as _event
from tests.sandbox.helpers import SOPHIE

pytestmark = pytest.mark.integration


def _authorized(load_event, lambda_context, *, sub="user-marc", identifier=None):
    """A login started by ``sub`` and finished at the bank (by ``identifier``): the app's redirect query."""
    started = start(load_event, lambda_context, sub=sub)
    kwargs = {} if identifier is None else {"identifier": identifier}
    bank_redirect = login_at_bank(started["authorization_url"], **kwargs)
    response = call_back(load_event, lambda_context, code=bank_redirect["code"], state=bank_redirect["state"])
    back = redirect_query(response)
    assert back["status"] == "authorized", back
    return started, back


def _problem(response):
    assert response["headers"]["Content-Type"] == "application/problem+json", response
    return response["statusCode"], json.loads(response["body"])["code"]


def _pynamodb_time(moment: datetime) -> str:
    """A datetime as PynamoDB's UTCDateTimeAttribute stores it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


def _accounts_of(load_event, lambda_context, sub="user-marc"):
    return accounts.lambda_handler(_event(load_event, "accounts/list_accounts.json", sub=sub), lambda_context)


def test_marc_connects_and_the_table_holds_no_plaintext_token(gateway, aws, load_event, lambda_context):
    # Given Marc starting a connection to B.P Grand Ouest
    started = start(load_event, lambda_context)
    assert started["bank_code"] == BANK
    assert parse_qs(urlsplit(started["authorization_url"]).query)["redirect_uri"] == [CALLBACK_URL]

    # When he logs in at the bank (identifier, OTP, accept) and the bank redirects his browser to our callback
    bank_redirect = login_at_bank(started["authorization_url"])
    response = call_back(load_event, lambda_context, code=bank_redirect["code"], state=bank_redirect["state"])

    # Then his browser goes back to the app, authorized, with a one-time completion value and nothing of the bank's
    back = redirect_query(response)
    assert back == {"screen": "banks", "status": "authorized", "bank_code": BANK, "completion": back["completion"]}
    assert len(back["completion"]) == 43  # 256 bits, base64url
    assert bank_redirect["code"] not in response["headers"]["Location"]
    assert gateway.bank.counts["exchange_code"] == 1
    # And until the app completes it, the connection is AUTHORIZED and serves no data
    (listed,) = list_connections(load_event, lambda_context)
    assert (listed["status"], listed["connected_at"]) == ("authorized", None)
    assert _problem(_accounts_of(load_event, lambda_context)) == (409, "completion_required")

    # When Marc's app completes it
    completed = complete(load_event, lambda_context, back["completion"])

    # Then it is ACTIVE, answered in the shape of GET /v1/connections
    assert completed["statusCode"] == 200, completed["body"]
    body = json.loads(completed["body"])
    assert body["status"] == "active" and body["connection_id"] == started["connection_id"]
    assert completed["headers"]["Cache-Control"] == "no-store"
    # And the tokens work at the bank, but no attribute of any stored item contains them, nor the completion
    connection, tokens = gateway.connections.get_with_tokens("user-marc", BANK)
    access, refresh = tokens.access_token.get_secret_value(), tokens.refresh_token.get_secret_value()
    assert wiring.bank_clients().get(BANK).get_accounts(access, psu=None).accounts
    stored = all_raw_values(aws) + json.dumps(aws.dynamodb.scan(TableName=STATES_TABLE)["Items"], default=str)
    for secret in (access, refresh, back["completion"]):
        assert secret not in stored and secret.encode().hex() not in stored
    assert completion_hash(back["completion"]) in stored  # only its hash

    # And GET /v1/connections shows the connection ACTIVE with the dates of the strong authentication
    (listed,) = list_connections(load_event, lambda_context)
    assert listed == body
    assert listed["status"] == "active" and listed["status_reason"] is None
    access_expires_at = datetime.fromisoformat(listed["access_expires_at"])
    reauth_due_at = datetime.fromisoformat(listed["reauth_due_at"])
    now = datetime.now(UTC)
    assert 3500 <= (access_expires_at - now).total_seconds() <= 3600  # the sandbox's expires_in
    assert 89 <= (reauth_due_at - now).days <= 90  # 13807's 90 days
    assert connection.refresh_issued_at == connection.connected_at
    assert _accounts_of(load_event, lambda_context)["statusCode"] == 200


def test_marc_refuses_at_the_bank_and_the_connection_says_so(gateway, load_event, lambda_context):
    started = start(load_event, lambda_context)

    bank_redirect = login_at_bank(started["authorization_url"], decision="refuse")
    assert bank_redirect["error"] == "access_denied"
    response = call_back(load_event, lambda_context, "oauth_callback/denied.json", **bank_redirect)

    assert redirect_query(response) == {"screen": "banks", "status": "error", "error": "access_denied"}
    assert gateway.bank.counts.get("exchange_code", 0) == 0
    (listed,) = list_connections(load_event, lambda_context)
    assert (listed["status"], listed["status_reason"]) == ("failed", "access_denied")
    assert _problem(_accounts_of(load_event, lambda_context)) == (409, "connection_failed")


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
    assert wiring.bank_clients().get(BANK).get_accounts(tokens.access_token.get_secret_value(), psu=None).accounts


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
        result = handle_callback(state=bank_redirect["state"], code=bank_redirect["code"], error=None, services=gateway)
        outcomes.append(result.outcome)

    with serialize_dynamodb_writes():
        threads = [threading.Thread(target=deliver) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # Then exactly one token exchange happened, and the authorized tokens work
    assert sorted(outcomes) == ["authorized", "invalid_state"]
    assert gateway.bank.counts["exchange_code"] == 1
    _, _, pending = gateway.connections.get_with_all_tokens("user-marc", BANK)
    assert wiring.bank_clients().get(BANK).get_accounts(pending.access_token.get_secret_value(), psu=None).accounts


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
    # (the connection knows when its login link expires: the same moment)
    aws.dynamodb.update_item(
        TableName=CONNECTIONS_TABLE,
        Key={"user_id": {"S": "user-marc"}, "bank_code": {"S": BANK}},
        UpdateExpression="SET journey_expires_at = :past",
        ExpressionAttributeValues={":past": {"S": _pynamodb_time(datetime.now(UTC) - timedelta(seconds=1))}},
    )

    # When the callback comes
    response = call_back(
        load_event,
        lambda_context,
        "oauth_callback/expired_state.json",
        code=bank_redirect["code"],
        state=bank_redirect["state"],
    )

    # Then state_expired, the code was never sent to the bank, and the connection is not left PENDING
    assert redirect_query(response)["error"] == "state_expired"
    assert gateway.bank.counts.get("exchange_code", 0) == 0
    (listed,) = list_connections(load_event, lambda_context)
    assert (listed["status"], listed["status_reason"]) == ("failed", "login_expired")


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
        wiring.bank_clients.reset()

    # When the callback comes
    response = call_back(load_event, lambda_context, code=bank_redirect["code"], state=bank_redirect["state"])

    # Then bank_unavailable, one attempt, and no record is usable or holds tokens
    assert redirect_query(response)["error"] == "bank_unavailable"
    assert gateway.bank.counts["exchange_code"] == 1
    connection, tokens, pending = gateway.connections.get_with_all_tokens("user-marc", BANK)
    assert (connection.status.value, connection.status_reason.value) == ("FAILED", "bank_unavailable")
    assert tokens is None and pending is None


def test_a_code_the_bank_refuses_is_token_exchange_failed(gateway, load_event, lambda_context):
    started = start(load_event, lambda_context)
    bank_redirect = login_at_bank(started["authorization_url"])

    response = call_back(load_event, lambda_context, code="not-the-code-the-bank-issued", state=bank_redirect["state"])

    assert redirect_query(response)["error"] == "token_exchange_failed"
    (listed,) = list_connections(load_event, lambda_context)
    assert (listed["status"], listed["status_reason"]) == ("failed", "token_exchange_failed")


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
    client = wiring.bank_clients().get(BANK)
    with pytest.raises(BankTokenInvalidError):
        client.get_accounts(access, psu=None)
    with pytest.raises(ReauthRequiredError):
        client.refresh(refresh)

    # And the record is REVOKED, without tokens, out of the refresh index, purged later
    (listed,) = list_connections(load_event, lambda_context)
    assert listed["status"] == "revoked" and listed["connection_id"] == started["connection_id"]
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
    assert listed["status"] == "active"


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

    # And Marc's own callback still gets his login authorized: the refused attempt did not burn his code
    response = call_back(load_event, lambda_context, code=stolen["code"], state=stolen["state"])
    assert redirect_query(response)["status"] == "authorized"


# --- the completion exchange: only the user who started the login activates it -----------------------------------


def test_a_shared_login_link_completed_by_another_person_connects_nobody(
    gateway, load_event, lambda_context, capsys, caplog
):
    # Given Marc's login link, sent to Sophie, who logs in at the bank with her own credentials and accepts: the
    # callback sends Sophie's browser to the app with the completion value
    started, back = _authorized(load_event, lambda_context, identifier=SOPHIE)
    _, _, sophies = gateway.connections.get_with_all_tokens("user-marc", BANK)
    assert wiring.bank_clients().get(BANK).get_accounts(sophies.access_token.get_secret_value(), psu=None).accounts

    # When Sophie's app, signed in as Sophie, completes it
    as_sophie = complete(load_event, lambda_context, back["completion"], sub="user-sophie")

    # Then the answer is the same 400 as for any unknown value, and the gateway logs a warning and counts it
    assert _problem(as_sophie) == (400, "invalid_completion")
    (warning,) = [record for record in caplog.records if record.levelname == "WARNING"]
    assert "completion attempted by another user" in warning.getMessage()
    logged = capsys.readouterr().out + caplog.text
    assert '"CompletionRejected":[1.0]' in logged
    assert back["completion"] not in logged
    # And Sophie's tokens were revoked at the bank and forgotten: nobody holds them
    with pytest.raises(BankTokenInvalidError):
        wiring.bank_clients().get(BANK).get_accounts(sophies.access_token.get_secret_value(), psu=None)
    connection, tokens, pending = gateway.connections.get_with_all_tokens("user-marc", BANK)
    assert tokens is None and pending is None
    assert (connection.status.value, connection.status_reason.value) == ("FAILED", "completion_rejected")
    # And Marc cannot complete it either (it is used up), nor read Sophie's data
    assert _problem(complete(load_event, lambda_context, back["completion"])) == (400, "invalid_completion")
    assert _problem(_accounts_of(load_event, lambda_context)) == (409, "connection_failed")
    assert started["connection_id"] == connection.connection_id


def test_a_completion_is_single_use(gateway, load_event, lambda_context):
    _, back = _authorized(load_event, lambda_context)

    first = complete(load_event, lambda_context, back["completion"])
    again = complete(load_event, lambda_context, back["completion"])

    assert first["statusCode"] == 200
    assert _problem(again) == (400, "invalid_completion")
    assert list_connections(load_event, lambda_context)[0]["status"] == "active"


def test_concurrent_completions_activate_once(gateway, load_event, lambda_context):
    from aisp.errors import InvalidCompletionError
    from aisp.logic.connections import complete_connection

    _, back = _authorized(load_event, lambda_context)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def attempt() -> None:
        barrier.wait()
        try:
            complete_connection(user_id="user-marc", bank_code=BANK, completion=back["completion"], services=gateway)
            outcomes.append("ACTIVE")
        except InvalidCompletionError:
            outcomes.append("invalid_completion")

    with serialize_dynamodb_writes():
        threads = [threading.Thread(target=attempt) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sorted(outcomes) == ["ACTIVE", "invalid_completion"]


def test_an_expired_completion_revokes_the_authorized_tokens(gateway, aws, load_event, lambda_context):
    # Given an authorized login whose completion value's 5 minutes have passed
    _, back = _authorized(load_event, lambda_context)
    _, _, pending = gateway.connections.get_with_all_tokens("user-marc", BANK)
    aws.dynamodb.update_item(
        TableName=STATES_TABLE,
        Key={"state_hash": {"S": "completion:" + completion_hash(back["completion"])}},
        UpdateExpression="SET valid_until = :past",
        ExpressionAttributeValues={":past": {"S": _pynamodb_time(datetime.now(UTC) - timedelta(seconds=1))}},
    )

    # When the app completes it anyway
    late = complete(load_event, lambda_context, back["completion"])

    # Then 400, the tokens are revoked at the bank and gone, and the connection says why
    assert _problem(late) == (400, "invalid_completion")
    with pytest.raises(BankTokenInvalidError):
        wiring.bank_clients().get(BANK).get_accounts(pending.access_token.get_secret_value(), psu=None)
    (listed,) = list_connections(load_event, lambda_context)
    assert (listed["status"], listed["status_reason"]) == ("failed", "completion_expired")


def test_another_users_value_or_another_bank_or_garbage_all_answer_the_same(gateway, load_event, lambda_context):
    _, back = _authorized(load_event, lambda_context)

    unknown = complete(load_event, lambda_context, "x" * 43)
    other_bank = complete(load_event, lambda_context, back["completion"], bank_code="10207")
    not_connected = complete(load_event, lambda_context, "y" * 43, sub="user-eve")

    assert _problem(unknown) == _problem(other_bank) == _problem(not_connected) == (400, "invalid_completion")
    bodies = {json.loads(r["body"])["detail"] for r in (unknown, other_bank, not_connected)}
    assert len(bodies) == 1  # no oracle
    # The right user and bank still completes it: a mistake on the bank code does not burn the value
    assert complete(load_event, lambda_context, back["completion"])["statusCode"] == 200


def test_a_reconnection_keeps_the_active_tokens_serving_until_completed(gateway, load_event, lambda_context):
    # Given Marc's ACTIVE connection and the tokens it serves
    connect_marc(load_event, lambda_context)
    _, serving = gateway.connections.get_with_tokens("user-marc", BANK)

    # When he starts a reconnection, but the link is finished at the bank by Sophie, whose app tries to complete it
    _, back = _authorized(load_event, lambda_context, identifier=SOPHIE)
    refused = complete(load_event, lambda_context, back["completion"], sub="user-sophie")

    # Then Marc's connection is still ACTIVE on its own tokens, which still work at the bank: nothing was lost
    assert _problem(refused) == (400, "invalid_completion")
    connection, tokens, pending = gateway.connections.get_with_all_tokens("user-marc", BANK)
    assert connection.status.value == "ACTIVE" and pending is None
    assert tokens == serving
    assert wiring.bank_clients().get(BANK).get_accounts(tokens.access_token.get_secret_value(), psu=None).accounts
    assert _accounts_of(load_event, lambda_context)["statusCode"] == 200


def test_a_completed_reconnection_replaces_and_revokes_the_previous_tokens(gateway, load_event, lambda_context):
    # Given Marc's ACTIVE connection, then his own new login, authorized but not yet completed
    connect_marc(load_event, lambda_context)
    _, old = gateway.connections.get_with_tokens("user-marc", BANK)
    _, back = _authorized(load_event, lambda_context)
    assert list_connections(load_event, lambda_context)[0]["status"] == "active"  # the old tokens still serve

    # When his app completes it
    assert complete(load_event, lambda_context, back["completion"])["statusCode"] == 200

    # Then the new tokens serve and the previous ones are dead at the bank
    _, new = gateway.connections.get_with_tokens("user-marc", BANK)
    assert new != old
    assert wiring.bank_clients().get(BANK).get_accounts(new.access_token.get_secret_value(), psu=None).accounts
    with pytest.raises(ReauthRequiredError):
        wiring.bank_clients().get(BANK).refresh(old.refresh_token.get_secret_value())


def test_the_refresher_revokes_an_authorization_nobody_completed(gateway, aws, load_event, lambda_context):
    from aisp.logic.refresh.scheduler import RefresherServices, RefreshPolicy, refresh_due_connections
    from tests.fakes import FakeClock, RecordingPublisher

    # Given an authorized login that its app never completes
    _authorized(load_event, lambda_context)
    _, _, pending = gateway.connections.get_with_all_tokens("user-marc", BANK)

    # When the refresher runs after its deadline
    later = FakeClock(datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=6))
    services = RefresherServices(
        registry=wiring.registry(),
        connections=gateway.connections,
        bank=gateway.bank,
        events=RecordingPublisher(),
        clock=later,
    )
    summary = refresh_due_connections(
        remaining_ms=lambda: 300_000, run_id="run-1", services=services, policy=RefreshPolicy()
    )

    # Then the tokens are revoked at the bank and forgotten, and the connection is FAILED, out of the index
    assert summary.authorizations_ended == 1
    with pytest.raises(BankTokenInvalidError):
        wiring.bank_clients().get(BANK).get_accounts(pending.access_token.get_secret_value(), psu=None)
    connection, tokens, left = gateway.connections.get_with_all_tokens("user-marc", BANK)
    assert (connection.status.value, connection.status_reason.value) == ("FAILED", "completion_expired")
    assert tokens is None and left is None
    assert not {"refresh_shard", "refresh_due_at", "pending", "pending_tokens"} & set(
        aws.raw_connection("user-marc", BANK)
    )


def test_an_expired_reconnection_leaves_the_active_connection_and_its_tokens(gateway, load_event, lambda_context):
    from aisp.logic.refresh.scheduler import RefresherServices, RefreshPolicy, refresh_due_connections
    from tests.fakes import FakeClock, RecordingPublisher

    # Given Marc's ACTIVE connection, and a reconnection whose login Sophie finished and nobody completes
    connect_marc(load_event, lambda_context)
    _, serving = gateway.connections.get_with_tokens("user-marc", BANK)
    _authorized(load_event, lambda_context, identifier=SOPHIE)
    _, _, sophies = gateway.connections.get_with_all_tokens("user-marc", BANK)

    # When the refresher runs after the completion's deadline
    later = FakeClock(datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=6))
    services = RefresherServices(
        registry=wiring.registry(),
        connections=gateway.connections,
        bank=gateway.bank,
        events=RecordingPublisher(),
        clock=later,
    )
    summary = refresh_due_connections(
        remaining_ms=lambda: 300_000, run_id="run-1", services=services, policy=RefreshPolicy()
    )

    # Then the uncompleted tokens are revoked and gone, and Marc's connection still serves his own
    assert summary.authorizations_ended == 1
    with pytest.raises(BankTokenInvalidError):
        wiring.bank_clients().get(BANK).get_accounts(sophies.access_token.get_secret_value(), psu=None)
    connection, tokens, pending = gateway.connections.get_with_all_tokens("user-marc", BANK)
    assert connection.status.value == "ACTIVE" and pending is None and tokens == serving
    assert wiring.bank_clients().get(BANK).get_accounts(tokens.access_token.get_secret_value(), psu=None).accounts
