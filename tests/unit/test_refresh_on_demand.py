"""The on-demand refresh hook (for issue 5's account queries): conditional writes, REAUTH_REQUIRED on refusal."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr

from aisp.api.errors import classify
from aisp.errors import (
    BankUnavailableError,
    ClientCredentialsRejectedError,
    CompletionRequiredError,
    ConflictError,
    ConnectionFailedError,
    ConnectionPendingError,
    ReauthRequiredError,
)
from aisp.logic.refresh.on_demand import not_usable, refresh_for_request, usable_tokens
from aisp.models.connection import ConnectionStatus, StatusReason, TokenPair


@pytest.fixture
def active(services, clock):
    pending = services.connections.create_pending(
        user_id="user-marc", bank_code="13807", connection_id="cn_1", now=clock.now()
    )
    return services.connections.activate(
        user_id="user-marc",
        bank_code="13807",
        connection_id="cn_1",
        expected_version=pending.version,
        tokens=TokenPair(access_token=SecretStr("access-old"), refresh_token=SecretStr("refresh-keep")),
        access_expires_at=clock.now() + timedelta(hours=1),
        reauth_due_at=clock.now() + timedelta(days=90),
        now=clock.now(),
    )


def test_a_fresh_token_is_used_as_is(services, active, bank):
    connection, tokens = usable_tokens("user-marc", "13807", services=services)

    assert tokens.access_token.get_secret_value() == "access-old"
    assert connection == active
    assert bank.calls == []


def test_an_expiring_token_is_refreshed_and_the_refresh_token_kept(services, active, bank, clock):
    clock.advance(minutes=59, seconds=30)  # inside the 60 s margin

    connection, tokens = usable_tokens("user-marc", "13807", services=services)

    assert [call.operation for call in bank.calls] == ["refresh"]
    assert bank.calls[0].kwargs == {"refresh_token": "refresh-keep"}
    assert tokens.refresh_token.get_secret_value() == "refresh-keep"
    assert connection.version == active.version + 1
    assert connection.access_expires_at == clock.now() + timedelta(hours=1)
    assert services.connections.get_with_tokens("user-marc", "13807")[1] == tokens


def test_a_refused_refresh_token_means_reauth_required(services, active, bank, clock):
    clock.advance(hours=2)
    bank.refresh_error = ReauthRequiredError("bank refused the grant", status=400, bank_code="13807")

    with pytest.raises(ReauthRequiredError):
        usable_tokens("user-marc", "13807", services=services)

    connection = services.connections.find("user-marc", "13807")
    assert connection.status is ConnectionStatus.REAUTH_REQUIRED and not connection.has_tokens
    with pytest.raises(ReauthRequiredError):  # and later calls say so without calling the bank
        usable_tokens("user-marc", "13807", services=services)
    assert len(bank.of("refresh")) == 1


def test_a_bank_outage_writes_nothing(services, active, bank, clock):
    clock.advance(hours=2)
    bank.refresh_error = BankUnavailableError("bank server error", status=503, bank_code="13807")

    with pytest.raises(BankUnavailableError):
        usable_tokens("user-marc", "13807", services=services)

    connection, tokens = services.connections.get_with_tokens("user-marc", "13807")
    assert connection == active and tokens.refresh_token.get_secret_value() == "refresh-keep"


def test_a_refusal_of_our_client_credentials_keeps_the_users_tokens_and_frees_the_lease(services, active, bank, clock):
    # Given a token endpoint refusing our client (a deployment problem, not the user's grant)
    clock.advance(hours=2)
    bank.refresh_error = ClientCredentialsRejectedError(
        "bank refused our client credentials", status=401, bank_code="13807", details={"oauth_error": "invalid_client"}
    )

    # When a request needs a token, it fails with that error (a 502 to the app, not reauth_required)
    with pytest.raises(ClientCredentialsRejectedError) as raised:
        usable_tokens("user-marc", "13807", services=services)

    # Then the connection and its tokens are as they were, and the next request may try again at once
    assert classify(raised.value)[:2] == (502, "bank_unavailable")
    connection, tokens = services.connections.get_with_tokens("user-marc", "13807")
    assert connection == active and tokens.refresh_token.get_secret_value() == "refresh-keep"
    bank.refresh_error = None
    usable_tokens("user-marc", "13807", services=services)
    assert len(bank.of("refresh")) == 2


def test_losing_the_race_uses_the_winners_tokens(services, active, bank, clock):
    # Given another refresher that stored new tokens after we read the connection
    clock.advance(hours=2)
    stale, stale_tokens = services.connections.get_with_tokens("user-marc", "13807")
    services.connections.store_refreshed_tokens(
        stale,
        tokens=TokenPair(access_token=SecretStr("access-winner"), refresh_token=SecretStr("refresh-keep")),
        access_expires_at=clock.now() + timedelta(hours=1),
        now=clock.now(),
    )

    # When we refresh from our stale read
    connection, tokens = refresh_for_request(stale, stale_tokens, services=services)

    # Then our write lost and we use what the winner stored
    assert tokens.access_token.get_secret_value() == "access-winner"
    assert connection.version == stale.version + 1


def test_losing_the_race_to_a_delete_is_a_conflict(services, active, bank, clock):
    clock.advance(hours=2)
    stale, stale_tokens = services.connections.get_with_tokens("user-marc", "13807")
    services.connections.revoke(stale, now=clock.now(), purge_at=clock.now() + timedelta(days=30))

    with pytest.raises(ConflictError):
        refresh_for_request(stale, stale_tokens, services=services)


# ----------------------------------------------------------------------------------------------------------------
# The refresh lease (issue 6): an on-demand refresh never calls the bank while someone else refreshes
# ----------------------------------------------------------------------------------------------------------------


def _hold_lease(services, clock, owner="refresher:run:1"):
    from aisp.models.refresh import ConnectionKey

    leased = services.connections.acquire_lease(
        ConnectionKey("user-marc", "13807"), owner=owner, now=clock.now(), lease_seconds=60, due_before=2**40
    )
    assert leased is not None
    return leased


def test_an_on_demand_refresh_waits_for_the_lease_holder_and_uses_its_tokens(services, active, bank, clock):
    import threading

    # Given the refresher holding the lease of an expired connection, storing its new tokens 0.3 s later
    clock.advance(hours=2)
    leased = _hold_lease(services, clock)

    def refresher_finishes():
        services.connections.store_refreshed_tokens(
            leased.connection,
            tokens=TokenPair(access_token=SecretStr("access-from-refresher"), refresh_token=SecretStr("refresh-keep")),
            access_expires_at=clock.now() + timedelta(hours=1),
            now=clock.now(),
            lease_owner="refresher:run:1",
        )

    timer = threading.Timer(0.3, refresher_finishes)
    timer.start()

    # When an account query needs a token meanwhile
    try:
        connection, tokens = usable_tokens("user-marc", "13807", services=services)
    finally:
        timer.join()

    # Then it used the refresher's tokens and never called the bank itself
    assert tokens.access_token.get_secret_value() == "access-from-refresher"
    assert connection.version == active.version + 1
    assert bank.calls == []


def test_an_on_demand_refresh_gives_up_if_the_lease_is_never_released(services, active, bank, clock, monkeypatch):
    from aisp.errors import RefreshInProgressError
    from aisp.logic.refresh import on_demand as tokens_module

    monkeypatch.setattr(tokens_module, "LEASE_WAIT_SECONDS", 0.3)
    clock.advance(hours=2)
    _hold_lease(services, clock)

    with pytest.raises(RefreshInProgressError):
        usable_tokens("user-marc", "13807", services=services)

    assert bank.calls == []
    assert services.connections.get_with_tokens("user-marc", "13807")[0] == active


def test_an_on_demand_refresh_takes_over_an_expired_lease(services, active, bank, clock):
    # Given a lease left by a refresher that crashed a while ago
    clock.advance(hours=2)
    _hold_lease(services, clock)
    clock.advance(seconds=61)

    connection, tokens = usable_tokens("user-marc", "13807", services=services)

    assert [call.operation for call in bank.calls] == ["refresh"]
    assert connection.version == active.version + 1


def test_an_on_demand_refresh_releases_the_lease_when_the_bank_fails(services, active, bank, clock, memory_stack):
    clock.advance(hours=2)
    bank.refresh_error = BankUnavailableError("bank server error", status=503, bank_code="13807")

    with pytest.raises(BankUnavailableError):
        usable_tokens("user-marc", "13807", services=services)

    assert "lease_owner" not in memory_stack.raw_connection("user-marc", "13807")


def test_a_refused_on_demand_refresh_leaves_the_event_to_the_refresher(services, active, bank, clock, memory_stack):
    clock.advance(hours=2)
    bank.refresh_error = ReauthRequiredError("bank refused the grant", status=400, bank_code="13807")

    with pytest.raises(ReauthRequiredError):
        usable_tokens("user-marc", "13807", services=services)

    item = memory_stack.raw_connection("user-marc", "13807")
    assert item["reauth_notice"] == {"S": "PENDING"}
    assert item["refresh_due_at"] == {"N": str(int(clock.now().timestamp()))}
    assert "lease_owner" not in item and "tokens" not in item


def test_a_consent_write_during_the_refresh_does_not_drop_the_new_token(services, active, bank, clock, memory_stack):
    # Given a refresh whose bank call overlaps a write that bumps the version without touching tokens
    clock.advance(hours=2)
    original_refresh = bank.refresh

    def refresh_while_consent_is_written(bank_code, *, refresh_token):
        # What a consent snapshot write does to the item: version + 1, the tokens as they were
        version = int(memory_stack.raw_connection("user-marc", "13807")["version"]["N"])
        memory_stack.connections.set_raw_attribute("user-marc", "13807", "version", {"N": str(version + 1)})
        return original_refresh(bank_code, refresh_token=refresh_token)

    bank.refresh = refresh_while_consent_is_written

    # When the account query refreshes
    connection, tokens = usable_tokens("user-marc", "13807", services=services)

    # Then the new access token was stored all the same (the bank has revoked the old one)
    stored_connection, stored = services.connections.get_with_tokens("user-marc", "13807")
    assert stored == tokens and tokens.access_token.get_secret_value().startswith("access-token-")
    assert stored_connection.version == active.version + 2


def test_past_its_reauth_due_date_a_connection_is_reauth_required_and_the_event_left_for_the_refresher(
    services, active, bank, clock
):
    # Given an ACTIVE connection whose strong authentication's validity just ended (the refresher has not run yet)
    clock.advance(days=90, seconds=1)

    # When an account query needs its token
    with pytest.raises(ReauthRequiredError):
        usable_tokens("user-marc", "13807", services=services)

    # Then the bank is not asked, and the connection is REAUTH_REQUIRED, its event pending for the refresher
    assert bank.calls == []
    stored = services.connections.find("user-marc", "13807")
    assert (stored.status, stored.status_reason) == (ConnectionStatus.REAUTH_REQUIRED, StatusReason.REAUTH_DUE)


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (ConnectionStatus.PENDING, ConnectionPendingError, "connection_pending"),
        (ConnectionStatus.AUTHORIZED, CompletionRequiredError, "completion_required"),
        (ConnectionStatus.FAILED, ConnectionFailedError, "connection_failed"),
        (ConnectionStatus.REAUTH_REQUIRED, ReauthRequiredError, "reauth_required"),
    ],
)
def test_a_connection_that_cannot_serve_says_why(active, status, error, code):
    from aisp.api.errors import classify

    refused = not_usable(active.model_copy(update={"status": status}))

    assert type(refused) is error
    assert classify(refused)[:2] == (409, code)
    assert refused.details["connection_status"] == status.value
