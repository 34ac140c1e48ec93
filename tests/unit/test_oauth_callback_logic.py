"""handle_callback: single-use state, one code exchange, encrypted tokens, a redirect with a stable outcome."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from aisp.dal import refresh_shard
from aisp.errors import (
    BankProtocolError,
    BankUnavailableError,
    InvalidCompletionError,
    PersistenceError,
    ReauthRequiredError,
)
from aisp.logic.connections import complete_connection, start_connection
from aisp.logic.oauth_callback import handle_callback
from aisp.models.connection import ConnectionStatus, StatusReason
from aisp.pkce import code_challenge

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


def _completion(result):
    (value,) = _query(result.redirect_url)[1]["completion"]
    return value


def test_success_seals_the_tokens_awaiting_completion_and_redirects_authorized(
    memory_stack, services, policy, bank, clock
):
    # Given a started journey
    started, state = _start(services, policy)
    clock.advance(minutes=2)

    # When the bank redirects back with a code
    result = handle_callback(state=state, code=CODE, error=None, services=services)

    # Then the browser goes back to the app with the outcome and a one-time completion value, nothing else of ours
    base, query = _query(result.redirect_url)
    assert base == "https://app.example.com/connections/done"
    completion = _completion(result)
    assert query == {"screen": ["banks"], "status": ["authorized"], "bank_code": ["13807"], "completion": [completion]}
    assert len(completion) == 43
    assert CODE not in result.redirect_url and state not in result.redirect_url
    # And the code was exchanged once, with the same redirect_uri as /authorize and the verifier of its challenge
    (exchange,) = bank.of("exchange_code")
    verifier = exchange.kwargs.pop("code_verifier")
    assert exchange.kwargs == {"code": CODE, "redirect_uri": "https://api.example.com/oauth/callback"}
    assert code_challenge(verifier) == bank.of("authorization_url")[0].kwargs["code_challenge"]
    # And the connection is AUTHORIZED: the new tokens sealed awaiting completion, none serving yet
    connection, tokens, pending = services.connections.get_with_all_tokens("user-marc", "13807")
    now = clock.now()
    assert connection.status is ConnectionStatus.AUTHORIZED
    assert tokens is None and pending.access_token.get_secret_value().startswith("access-token-")
    assert connection.connected_at is None
    authorization = connection.pending
    assert authorization.authorized_at == now and authorization.expires_at == now + timedelta(minutes=5)
    assert authorization.access_expires_at == now + timedelta(seconds=3600)
    assert authorization.reauth_due_at == now + timedelta(days=90)
    assert connection.version == 2
    # And it is due in the refresh index at the completion deadline, so an uncompleted login gets revoked
    item = memory_stack.raw_connection("user-marc", "13807")
    assert item["refresh_shard"] == {"N": str(refresh_shard("user-marc", "13807"))}
    assert item["refresh_due_at"] == {"N": str(int(authorization.expires_at.timestamp()))}

    # When the user who started it completes it a minute later
    clock.advance(minutes=1)
    summary = complete_connection(user_id="user-marc", bank_code="13807", completion=completion, services=services)

    # Then it is ACTIVE with the dates of the strong authentication, and due at its access expiry
    connection, tokens = services.connections.get_with_tokens("user-marc", "13807")
    assert connection.status is ConnectionStatus.ACTIVE and summary.status == "active"
    assert connection.connected_at == connection.refresh_issued_at == now
    assert connection.access_expires_at == now + timedelta(seconds=3600)
    assert tokens == pending and connection.pending is None
    item = memory_stack.raw_connection("user-marc", "13807")
    assert item["refresh_due_at"] == {"N": str(int(connection.access_expires_at.timestamp()))}
    assert not {"pending", "pending_tokens", "authorization_id"} & set(item)


def test_reauth_due_is_capped_by_the_setting_and_the_bank(services, policy, clock):
    # BPCE allows 90 days on 13807; a deployment may ask for less
    services = dataclasses.replace(services, reauth_days=30)
    _, state = _start(services, policy)

    handle_callback(state=state, code=CODE, error=None, services=services)

    pending = services.connections.find("user-marc", "13807").pending
    assert pending.reauth_due_at == clock.now() + timedelta(days=30)


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
    # The record is untouched (a newer journey may be under way), but it stands FAILED: its login link is dead
    connection = services.connections.find("user-marc", "13807")
    assert connection.status is ConnectionStatus.PENDING
    assert connection.as_of(clock.now()).status is ConnectionStatus.FAILED
    assert connection.as_of(clock.now()).status_reason is StatusReason.LOGIN_EXPIRED


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
    # The first login failed: the connection says so rather than staying PENDING
    connection = services.connections.find("user-marc", "13807")
    assert (connection.status, connection.status_reason.value) == (ConnectionStatus.FAILED, expected)
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
def test_a_failed_exchange_leaves_a_failed_record_without_tokens(services, policy, bank, failure, expected):
    _, state = _start(services, policy)
    bank.exchange_error = failure

    result = handle_callback(state=state, code=CODE, error=None, services=services)

    assert _query(result.redirect_url)[1]["error"] == [expected]
    connection, tokens, pending = services.connections.get_with_all_tokens("user-marc", "13807")
    assert (connection.status, connection.status_reason.value) == (ConnectionStatus.FAILED, expected)
    assert tokens is None and pending is None


def test_a_failed_reconnection_leaves_the_active_connection_as_it_was(services, policy, bank):
    _connect(services, policy)
    before = services.connections.get_with_tokens("user-marc", "13807")
    _, state = _start(services, policy)

    result = handle_callback(state=state, code=None, error="access_denied", services=services)

    assert _query(result.redirect_url)[1]["error"] == ["access_denied"]
    assert services.connections.get_with_tokens("user-marc", "13807") == before


class RacingRepository:
    """Delegates to the real repository; runs ``before_authorize`` once, between the read and the write."""

    def __init__(self, inner, before_authorize):
        self._inner = inner
        self._before_authorize = before_authorize

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def authorize(self, **kwargs):
        hook, self._before_authorize = self._before_authorize, None
        if hook is not None:
            hook()
        return self._inner.authorize(**kwargs)


def test_a_reconnection_survives_a_concurrent_refresh(services, policy, bank):
    # Given an ACTIVE connection being reconnected
    _connect(services, policy)
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

    # Then the callback's first write loses, it reads again and stores the new authentication awaiting completion,
    # while the refreshed tokens keep serving
    assert _query(result.redirect_url)[1]["status"] == ["authorized"]
    connection, tokens, pending = repository.get_with_all_tokens("user-marc", "13807")
    (_, second_exchange) = bank.of("exchange_code")
    assert second_exchange.kwargs["code"] == "second-code"
    assert pending.access_token.get_secret_value() == f"access-token-{bank.issued:04d}-secret"
    assert connection.status is ConnectionStatus.ACTIVE and tokens is not None
    # 1 pending, 2 first authorization, 3 its completion, 4 the refresh, 5 the retried authorization
    assert connection.version == 5


def test_concurrent_double_callbacks_exchange_the_code_once(services, policy, bank):
    # Given one started journey and the browser (or an attacker) sending its callback twice at once
    _, state = _start(services, policy)
    barrier = threading.Barrier(2)
    results = []

    def callback():
        barrier.wait()
        results.append(handle_callback(state=state, code=CODE, error=None, services=services))

    threads = [threading.Thread(target=callback) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then exactly one exchange happened; one side is authorized, the other sees invalid_state
    assert len(bank.of("exchange_code")) == 1
    assert sorted(result.outcome for result in results) == ["authorized", "invalid_state"]
    assert services.connections.find("user-marc", "13807").status is ConnectionStatus.AUTHORIZED


def test_a_second_login_replaces_an_uncompleted_one_and_revokes_its_tokens(services, policy, bank):
    # Given a login authorized but never completed, then a second one
    _, first = _start(services, policy)
    old = handle_callback(state=first, code=CODE, error=None, services=services)
    _, _, old_tokens = services.connections.get_with_all_tokens("user-marc", "13807")
    _, second = _start(services, policy)

    new = handle_callback(state=second, code="second-code", error=None, services=services)

    # Then the first one's tokens are revoked at the bank, its completion value activates nothing, the second does
    (revoke,) = bank.of("revoke")
    assert revoke.kwargs["token"] == old_tokens.refresh_token.get_secret_value()
    with pytest.raises(InvalidCompletionError):
        complete_connection(user_id="user-marc", bank_code="13807", completion=_completion(old), services=services)
    done = complete_connection(user_id="user-marc", bank_code="13807", completion=_completion(new), services=services)
    assert done.status == "active"


def test_tokens_that_cannot_be_stored_are_given_back_to_the_bank(services, policy, bank):
    class FailingRepository(RacingRepository):
        def authorize(self, **kwargs):
            raise PersistenceError("data store call failed")

    _, state = _start(services, policy)
    failing = dataclasses.replace(services, connections=FailingRepository(services.connections, None))

    result = handle_callback(state=state, code=CODE, error=None, services=failing)

    assert _query(result.redirect_url)[1]["error"] == ["token_exchange_failed"]
    (revoke,) = bank.of("revoke")
    assert revoke.kwargs["token"] == f"refresh-token-{bank.issued - 1:04d}-secret"
    connection = services.connections.find("user-marc", "13807")
    assert connection.status is ConnectionStatus.FAILED and not connection.has_tokens


def _connect(services, policy):
    _, state = _start(services, policy)
    result = handle_callback(state=state, code=CODE, error=None, services=services)
    return complete_connection(
        user_id="user-marc", bank_code="13807", completion=_completion(result), services=services
    )


def test_a_completed_connection_enters_the_sync_due_index_at_its_first_slot_and_again_on_reconnect(
    services, policy, clock, transaction_store
):
    from aisp.logic.sync.slots import next_slot

    services = dataclasses.replace(services, transactions=transaction_store, sync_runs_per_day=4)
    _, state = _start(services, policy)
    completion = _completion(handle_callback(state=state, code=CODE, error=None, services=services))
    # Authorized but not completed: not to sync yet
    connection = services.connections.find("user-marc", "13807")
    assert transaction_store.scheduled(connection.connection_id) is None

    complete_connection(user_id="user-marc", bank_code="13807", completion=completion, services=services)

    now = clock.now()
    first = next_slot(connection.connection_id, now, 4)
    assert transaction_store.scheduled(connection.connection_id) == int(first.timestamp())
    assert now < first <= now + timedelta(hours=6)  # one of four slots of the Paris day
    (due,) = transaction_store.due_syncs(_shard(connection.connection_id), due_before=first)
    assert (due.user_id, due.bank_code) == ("user-marc", "13807")

    # Out of the index (as a sync run leaves a connection that needs reauth), then reconnected: back in it
    assert transaction_store.unschedule_sync(due)
    clock.advance(days=1)
    _, state = _start(services, policy)
    completion = _completion(handle_callback(state=state, code=CODE, error=None, services=services))
    complete_connection(user_id="user-marc", bank_code="13807", completion=completion, services=services)
    assert transaction_store.scheduled(connection.connection_id) == int(
        next_slot(connection.connection_id, clock.now(), 4).timestamp()
    )


def test_a_failed_sync_schedule_does_not_fail_the_completion(services, policy, transaction_store, monkeypatch):
    def unavailable(*args, **kwargs):
        raise PersistenceError("store unavailable")

    monkeypatch.setattr(transaction_store, "schedule_sync", unavailable)
    services = dataclasses.replace(services, transactions=transaction_store)
    _, state = _start(services, policy)
    completion = _completion(handle_callback(state=state, code=CODE, error=None, services=services))

    summary = complete_connection(user_id="user-marc", bank_code="13807", completion=completion, services=services)

    # ACTIVE all the same: the sync's daily catch-up schedules it
    assert summary.status == "active"


def _shard(connection_id):
    from aisp.models.sync import sync_shard

    return sync_shard(connection_id)
