"""start_connection / list_connections / delete_connection over the in-memory stack with a fake bank and clock."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from aisp import wiring
from aisp.banks import BankRegistry
from aisp.dal import hash_state
from aisp.errors import (
    BankUnavailableError,
    ConfigurationError,
    ConnectionNotFoundError,
    InvalidRequestError,
    UnknownBankError,
)
from aisp.logic.connections import callback_url_for, delete_connection, list_connections, start_connection
from aisp.logic.services import ConnectPolicy
from aisp.models.connection import ConnectionStatus, TokenPair
from aisp.pkce import code_challenge, open_verifier

DOMAIN = "api-id.execute-api.eu-west-3.amazonaws.com"
RETURN_URL = "https://app.example.com/connections/done?screen=banks"


def _start(services, policy, user_id="user-marc", bank_code="13807", return_url=RETURN_URL):
    return start_connection(
        user_id=user_id,
        bank_code=bank_code,
        return_url=return_url,
        api_domain=DOMAIN,
        services=services,
        policy=policy,
    )


def _activate(services, user_id="user-marc", bank_code="13807", refresh="refresh-1"):
    connection = services.connections.find(user_id, bank_code)
    return services.connections.activate(
        user_id=user_id,
        bank_code=bank_code,
        connection_id=connection.connection_id,
        expected_version=connection.version,
        tokens=TokenPair(access_token=SecretStr("access-1"), refresh_token=SecretStr(refresh)),
        access_expires_at=services.clock.now() + timedelta(hours=1),
        reauth_due_at=services.clock.now() + timedelta(days=90),
        now=services.clock.now(),
    )


def test_start_creates_a_pending_connection_and_a_single_use_state(memory_stack, services, policy, bank, clock):
    # When Marc starts connecting bank 13807
    started = _start(services, policy)

    # Then a PENDING connection exists and the login link carries a fresh >=128-bit state and our callback
    connection = services.connections.find("user-marc", "13807")
    assert connection.status is ConnectionStatus.PENDING
    assert started.connection_id == connection.connection_id
    assert started.bank_code == "13807"
    assert started.expires_at == clock.now() + timedelta(minutes=10)
    query = parse_qs(urlsplit(started.authorization_url).query)
    state = query["state"][0]
    assert len(state) >= 43  # 32 random bytes, base64url
    assert query["redirect_uri"] == [f"https://{DOMAIN}/oauth/callback"]
    # And the state is stored hashed, with what the callback needs
    item = memory_stack.raw_state(hash_state(state))
    assert item["user_id"]["S"] == "user-marc"
    assert item["return_url"]["S"] == RETURN_URL
    assert item["redirect_uri"]["S"] == f"https://{DOMAIN}/oauth/callback"
    assert item["connection_id"]["S"] == started.connection_id


def test_starting_again_reuses_the_connection_with_a_new_state(services, policy, bank):
    first = _start(services, policy)
    second = _start(services, policy)

    assert first.connection_id == second.connection_id
    states = [call.kwargs["state"] for call in bank.of("authorization_url")]
    assert len(set(states)) == 2


def test_reconnecting_an_active_connection_keeps_it_active_until_the_callback(services, policy):
    _start(services, policy)
    active = _activate(services)

    again = _start(services, policy)

    current, tokens = services.connections.get_with_tokens("user-marc", "13807")
    assert again.connection_id == active.connection_id
    assert current.status is ConnectionStatus.ACTIVE
    assert tokens.refresh_token.get_secret_value() == "refresh-1"


def test_a_revoked_connection_restarts_as_pending_with_the_same_id(services, policy):
    started = _start(services, policy)
    delete_connection("user-marc", "13807", services=services)

    again = _start(services, policy)

    assert again.connection_id == started.connection_id
    assert services.connections.find("user-marc", "13807").status is ConnectionStatus.PENDING


def test_a_return_url_off_the_allowlist_is_refused_and_nothing_is_stored(memory_stack, services, policy, bank):
    with pytest.raises(InvalidRequestError) as caught:
        _start(services, policy, return_url="https://app.example.com.evil.com/connections/done")

    assert caught.value.details == {"field": "return_url"}
    assert "evil" not in caught.value.message
    assert services.connections.find("user-marc", "13807") is None
    assert memory_stack.raw_states() == []
    assert bank.calls == []


def test_an_unknown_bank_is_refused(services, policy):
    with pytest.raises(UnknownBankError):
        _start(services, policy, bank_code="99999")


def test_a_failure_building_the_login_link_leaves_no_state(memory_stack, services, policy, bank):
    def broken(*_args, **_kwargs):
        raise ConfigurationError("bank credentials secret could not be read or is not valid JSON")

    bank.authorization_url = broken

    with pytest.raises(ConfigurationError):
        _start(services, policy)
    assert memory_stack.raw_states() == []


def test_callback_url_is_configured_or_derived_from_the_api_domain():
    configured = ConnectPolicy(return_urls=(), callback_url="https://api.fintech.example/oauth/callback")
    derived = ConnectPolicy(return_urls=())

    assert callback_url_for(configured, DOMAIN) == "https://api.fintech.example/oauth/callback"
    assert callback_url_for(derived, "API.example.com") == "https://api.example.com/oauth/callback"
    for bad in (None, "", "evil.com/path", "a b"):
        with pytest.raises(ConfigurationError):
            callback_url_for(derived, bad)


def test_list_shows_only_the_callers_connections_without_tokens(services, policy):
    _start(services, policy, user_id="user-marc")
    _activate(services, user_id="user-marc")
    _start(services, policy, user_id="user-eve", bank_code="17515")

    listed = list_connections("user-marc", services=services)

    assert [(c.bank_code, c.status) for c in listed] == [("13807", "active")]
    dumped = listed[0].model_dump_json()
    assert "access-1" not in dumped and "refresh-1" not in dumped
    assert set(listed[0].model_dump()) == {
        "connection_id",
        "bank_code",
        "status",
        "status_reason",
        "connected_at",
        "access_expires_at",
        "reauth_due_at",
        "consent",
    }


def test_delete_revokes_at_the_bank_then_forgets_the_tokens(memory_stack, services, policy, bank, clock):
    _start(services, policy)
    _activate(services)

    delete_connection("user-marc", "13807", services=services)

    (revoke,) = bank.of("revoke")
    assert revoke.kwargs == {"token": "refresh-1", "token_type_hint": "refresh_token"}
    connection, tokens = services.connections.get_with_tokens("user-marc", "13807")
    assert connection.status is ConnectionStatus.REVOKED and tokens is None
    item = memory_stack.raw_connection("user-marc", "13807")
    assert "tokens" not in item and "refresh_shard" not in item
    assert int(item["purge_at"]["N"]) == int((clock.now() + timedelta(days=30)).timestamp())
    # And deleting again is a no-op
    delete_connection("user-marc", "13807", services=services)
    assert len(bank.of("revoke")) == 1


def test_delete_forgets_the_tokens_even_when_the_bank_revocation_fails(services, policy, bank):
    _start(services, policy)
    _activate(services)
    bank.revoke_error = BankUnavailableError("bank server error", status=503, bank_code="13807")

    delete_connection("user-marc", "13807", services=services)

    assert services.connections.find("user-marc", "13807").status is ConnectionStatus.REVOKED


def test_delete_skips_the_bank_when_it_cannot_revoke(services, policy, bank):
    registry = wiring.registry()
    no_revocation = [
        b.model_copy(update={"capabilities": b.capabilities.model_copy(update={"token_revocation": False})})
        for b in registry.banks
    ]
    services = dataclasses.replace(services, registry=BankRegistry(no_revocation))
    _start(services, policy)
    _activate(services)

    delete_connection("user-marc", "13807", services=services)

    assert bank.of("revoke") == []
    assert services.connections.find("user-marc", "13807").status is ConnectionStatus.REVOKED


def test_nobody_deletes_another_users_connection(services, policy, bank):
    # Given Marc's active connection
    _start(services, policy)
    _activate(services)

    # When Eve deletes "her" 13807 connection, and a bank she never connected
    with pytest.raises(ConnectionNotFoundError):
        delete_connection("user-eve", "13807", services=services)
    with pytest.raises(UnknownBankError):
        delete_connection("user-eve", "99999", services=services)

    # Then Marc's connection and tokens are untouched and the bank was not called
    connection, tokens = services.connections.get_with_tokens("user-marc", "13807")
    assert connection.status is ConnectionStatus.ACTIVE and tokens is not None
    assert bank.of("revoke") == []


def _registry_with(**capabilities):
    banks = wiring.registry().banks
    return BankRegistry(
        [b.model_copy(update={"capabilities": b.capabilities.model_copy(update=capabilities)}) for b in banks]
    )


def test_start_sends_a_pkce_challenge_and_seals_its_verifier_with_the_state(memory_stack, services, policy, bank):
    started = _start(services, policy)

    (call,) = bank.of("authorization_url")
    state = parse_qs(urlsplit(started.authorization_url).query)["state"][0]
    item = memory_stack.raw_state(hash_state(state))
    verifier = open_verifier(item["code_verifier"]["B"], state=state)
    assert call.kwargs["code_challenge"] == code_challenge(verifier)


def test_a_bank_without_pkce_gets_no_challenge_and_no_verifier_is_stored(memory_stack, services, policy, bank):
    services = dataclasses.replace(services, registry=_registry_with(pkce=False))

    started = _start(services, policy)

    (call,) = bank.of("authorization_url")
    state = parse_qs(urlsplit(started.authorization_url).query)["state"][0]
    item = memory_stack.raw_state(hash_state(state))
    assert call.kwargs["code_challenge"] is None
    assert "code_verifier" not in item
