"""The on-demand refresh hook (for issue 5's account queries): conditional writes, REAUTH_REQUIRED on refusal."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr

from aisp.errors import BankUnavailableError, ConflictError, ReauthRequiredError
from aisp.logic.tokens import refresh_tokens, usable_tokens
from aisp.models.connection import ConnectionStatus, TokenPair


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
    connection, tokens = refresh_tokens(stale, stale_tokens, services=services)

    # Then our write lost and we use what the winner stored
    assert tokens.access_token.get_secret_value() == "access-winner"
    assert connection.version == stale.version + 1


def test_losing_the_race_to_a_delete_is_a_conflict(services, active, bank, clock):
    clock.advance(hours=2)
    stale, stale_tokens = services.connections.get_with_tokens("user-marc", "13807")
    services.connections.revoke(stale, now=clock.now(), purge_at=clock.now() + timedelta(days=30))

    with pytest.raises(ConflictError):
        refresh_tokens(stale, stale_tokens, services=services)
