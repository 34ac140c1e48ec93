"""handle_callback: single-use state, one code exchange, encrypted tokens, a redirect with a stable outcome."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from aisp.dal import refresh_shard
from aisp.errors import BankProtocolError, BankUnavailableError, ReauthRequiredError
from aisp.logic.connections import start_connection
from aisp.logic.oauth_callback import handle_callback
from aisp.models.connection import ConnectionStatus
from aisp.pkce import code_challenge
from tests.fakes import serialize_dynamodb_writes

RETURN_URL = "https://app.example.com/connections/done?screen=banks"
CODE = "one-time-code-from-the-bank"


def _start(services, policy, user_id="user-marc"):
    started = start_connection(
        user_id=user_id,
        bank_code="13807",
        return_url=RETURN_URL,
        api_domain="api.example.com",
        services=services,
        policy=policy,
    )
    state = parse_qs(urlsplit(started.authorization_url).query)["state"][0]
    return started, state


def _query(url):
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}", parse_qs(parts.query)


def test_success_stores_encrypted_tokens_and_redirects_connected(aws, services, policy, bank, clock):
    # Given a started journey
    started, state = _start(services, policy)
    clock.advance(minutes=2)

    # When the bank redirects back with a code
    result = handle_callback(state=state, code=CODE, error=None, services=services)

    # Then the browser goes back to the app with the outcome and nothing else of ours
    base, query = _query(result.redirect_url)
    assert base == "https://app.example.com/connections/done"
    assert query == {
        "screen": ["banks"],
        "status": ["connected"],
        "bank_code": ["13807"],
        "connection_id": [started.connection_id],
    }
    assert CODE not in result.redirect_url and state not in result.redirect_url
    # And the code was exchanged once, with the same redirect_uri as /authorize and the verifier of its challenge
    (exchange,) = bank.of("exchange_code")
    verifier = exchange.kwargs.pop("code_verifier")
    assert exchange.kwargs == {"code": CODE, "redirect_uri": "https://api.example.com/oauth/callback"}
    assert code_challenge(verifier) == bank.of("authorization_url")[0].kwargs["code_challenge"]
    # And the connection is ACTIVE with its dates, and its tokens decrypt to what the bank issued
    connection, tokens = services.connections.get_with_tokens("user-marc", "13807")
    now = clock.now()
    assert connection.status is ConnectionStatus.ACTIVE
    assert connection.connected_at == now and connection.refresh_issued_at == now
    assert connection.access_expires_at == now + timedelta(seconds=3600)
    assert connection.reauth_due_at == now + timedelta(days=90)
    assert connection.version == 2
    assert tokens.access_token.get_secret_value().startswith("access-token-")
    item = aws.raw_connection("user-marc", "13807")
    assert item["refresh_shard"] == {"N": str(refresh_shard("user-marc", "13807"))}
    assert item["refresh_due_at"] == {"N": str(int(connection.access_expires_at.timestamp()))}


def test_reauth_due_is_capped_by_the_setting_and_the_bank(services, policy, clock):
    # BPCE allows 90 days on 13807; a deployment may ask for less
    services = dataclasses.replace(services, reauth_days=30)
    _, state = _start(services, policy)

    handle_callback(state=state, code=CODE, error=None, services=services)

    assert services.connections.find("user-marc", "13807").reauth_due_at == clock.now() + timedelta(days=30)


def test_a_replayed_callback_changes_nothing(services, policy, bank):
    _, state = _start(services, policy)
    handle_callback(state=state, code=CODE, error=None, services=services)
    before = services.connections.find("user-marc", "13807")

    replay = handle_callback(state=state, code=CODE, error=None, services=services)

    assert _query(replay.redirect_url)[1] == {"screen": ["banks"], "status": ["error"], "error": ["invalid_state"]}
    assert len(bank.of("exchange_code")) == 1
    assert services.connections.find("user-marc", "13807") == before


@pytest.mark.parametrize("state", ["forged-state", "", None])
def test_a_state_that_matches_nothing_has_no_redirect(services, bank, state):
    result = handle_callback(state=state, code=CODE, error=None, services=services)

    assert result.redirect_url is None
    assert result.outcome == "invalid_state"
    assert bank.calls == []


def test_an_expired_state_goes_back_with_state_expired(services, policy, bank, clock):
    _, state = _start(services, policy)
    clock.advance(minutes=10, seconds=1)

    result = handle_callback(state=state, code=CODE, error=None, services=services)

    assert _query(result.redirect_url)[1]["error"] == ["state_expired"]
    assert bank.of("exchange_code") == []
    assert services.connections.find("user-marc", "13807").status is ConnectionStatus.PENDING


@pytest.mark.parametrize(
    ("bank_error", "expected"),
    [
        ("access_denied", "access_denied"),
        ("temporarily_unavailable", "bank_unavailable"),
        ("server_error", "bank_unavailable"),
        ("invalid_scope", "token_exchange_failed"),
        ("<script>alert(1)</script>", "token_exchange_failed"),
    ],
)
def test_the_bank_redirecting_with_an_error(services, policy, bank, bank_error, expected):
    _, state = _start(services, policy)

    result = handle_callback(state=state, code=None, error=bank_error, services=services)

    assert _query(result.redirect_url)[1]["error"] == [expected]
    assert "script" not in result.redirect_url
    assert bank.of("exchange_code") == []
    # The state is used up: a later callback with it is invalid
    again = handle_callback(state=state, code=CODE, error=None, services=services)
    assert _query(again.redirect_url)[1]["error"] == ["invalid_state"]


def test_a_callback_without_code_or_error_fails_cleanly(services, policy, bank):
    _, state = _start(services, policy)

    result = handle_callback(state=state, code=None, error=None, services=services)

    assert _query(result.redirect_url)[1]["error"] == ["token_exchange_failed"]
    assert bank.of("exchange_code") == []


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (BankUnavailableError("bank server error", status=503, bank_code="13807"), "bank_unavailable"),
        (BankUnavailableError("bank did not answer", bank_code="13807"), "bank_unavailable"),
        (ReauthRequiredError("bank refused the grant", status=400, bank_code="13807"), "token_exchange_failed"),
        (BankProtocolError("bank token response is empty", status=200, bank_code="13807"), "token_exchange_failed"),
    ],
)
def test_a_failed_exchange_leaves_no_active_record(services, policy, bank, failure, expected):
    _, state = _start(services, policy)
    bank.exchange_error = failure

    result = handle_callback(state=state, code=CODE, error=None, services=services)

    assert _query(result.redirect_url)[1]["error"] == [expected]
    connection, tokens = services.connections.get_with_tokens("user-marc", "13807")
    assert connection.status is ConnectionStatus.PENDING and tokens is None


class RacingRepository:
    """Delegates to the real repository; runs ``before_activate`` once, between the read and the write."""

    def __init__(self, inner, before_activate):
        self._inner = inner
        self._before_activate = before_activate

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def activate(self, **kwargs):
        hook, self._before_activate = self._before_activate, None
        if hook is not None:
            hook()
        return self._inner.activate(**kwargs)


def test_new_tokens_win_over_a_concurrent_refresh(services, policy, bank):
    # Given an ACTIVE connection being reconnected
    _, first_state = _start(services, policy)
    handle_callback(state=first_state, code=CODE, error=None, services=services)
    _, state = _start(services, policy)
    repository = services.connections

    # When the refresher stores new tokens between the callback's read and its write
    def concurrent_refresh():
        connection, tokens = repository.get_with_tokens("user-marc", "13807")
        repository.store_refreshed_tokens(
            connection, tokens=tokens, access_expires_at=connection.access_expires_at, now=connection.updated_at
        )

    racing = dataclasses.replace(services, connections=RacingRepository(repository, concurrent_refresh))
    result = handle_callback(state=state, code="second-code", error=None, services=racing)

    # Then the callback's first write loses, it reads again and stores the tokens of the new authentication
    assert _query(result.redirect_url)[1]["status"] == ["connected"]
    connection, tokens = repository.get_with_tokens("user-marc", "13807")
    (_, second_exchange) = bank.of("exchange_code")
    assert second_exchange.kwargs["code"] == "second-code"
    assert tokens.access_token.get_secret_value() == f"access-token-{bank.issued:04d}-secret"
    assert connection.version == 4  # 1 pending, 2 first callback, 3 the refresh, 4 the retried activation


def test_concurrent_double_callbacks_exchange_the_code_once(services, policy, bank):
    # Given one started journey and the browser (or an attacker) sending its callback twice at once
    _, state = _start(services, policy)
    barrier = threading.Barrier(2)
    results = []

    def callback():
        barrier.wait()
        results.append(handle_callback(state=state, code=CODE, error=None, services=services))

    with serialize_dynamodb_writes():
        threads = [threading.Thread(target=callback) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # Then exactly one exchange happened; one side is connected, the other sees invalid_state
    assert len(bank.of("exchange_code")) == 1
    assert sorted(result.outcome for result in results) == ["connected", "invalid_state"]
    assert services.connections.find("user-marc", "13807").status is ConnectionStatus.ACTIVE
