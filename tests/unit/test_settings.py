"""Environment models: validated once, errors name every bad variable and never its value."""

from __future__ import annotations

import pytest

from aisp.errors import ConfigurationError
from aisp.settings import BankSettings, StorageSettings, parse_settings


def test_bank_settings_defaults_for_sandbox():
    # Given only the required variables
    settings = parse_settings(
        BankSettings, {"BANK_ENVIRONMENT": "sandbox", "BANK_CREDENTIALS_SECRET_NAME": "aisp/bank-credentials"}
    )

    # Then defaults fill the rest
    assert settings.bank_environment == "sandbox"
    assert settings.bank_timeout_seconds == 10.0
    assert settings.credentials_max_age_seconds == 300


def test_missing_and_invalid_variables_are_all_named_without_values():
    # Given a missing secret name and an invalid environment value
    environ = {"BANK_ENVIRONMENT": "staging-secret-value", "BANK_TIMEOUT_SECONDS": "-1"}

    # When the settings are parsed
    with pytest.raises(ConfigurationError) as caught:
        parse_settings(BankSettings, environ)

    # Then each variable is named, and the offending value is not echoed
    message = str(caught.value)
    assert "BANK_ENVIRONMENT" in message
    assert "BANK_CREDENTIALS_SECRET_NAME" in message
    assert "BANK_TIMEOUT_SECONDS" in message
    assert "staging-secret-value" not in message
    assert set(caught.value.details["variables"]) == {
        "BANK_ENVIRONMENT",
        "BANK_CREDENTIALS_SECRET_NAME",
        "BANK_TIMEOUT_SECONDS",
    }


def test_local_environment_requires_an_https_base_url_template():
    base = {"BANK_ENVIRONMENT": "local", "BANK_CREDENTIALS_SECRET_NAME": "s"}
    with pytest.raises(ConfigurationError, match="BANK_BASE_URL_TEMPLATE is required"):
        parse_settings(BankSettings, base)
    with pytest.raises(ConfigurationError, match="must be https"):
        parse_settings(BankSettings, {**base, "BANK_BASE_URL_TEMPLATE": "http://127.0.0.1:8443/{bank_code}"})
    with pytest.raises(ConfigurationError, match=r"containing \{bank_code\}"):
        parse_settings(BankSettings, {**base, "BANK_BASE_URL_TEMPLATE": "https://127.0.0.1:8443/"})

    settings = parse_settings(BankSettings, {**base, "BANK_BASE_URL_TEMPLATE": "https://127.0.0.1:8443/{bank_code}/"})
    assert settings.bank_base_url_template == "https://127.0.0.1:8443/{bank_code}"


def test_url_overrides_are_refused_outside_local():
    # A live deployment can never be pointed at another host or made to trust a private CA.
    with pytest.raises(ConfigurationError, match="only allowed when BANK_ENVIRONMENT=local"):
        parse_settings(
            BankSettings,
            {
                "BANK_ENVIRONMENT": "live",
                "BANK_CREDENTIALS_SECRET_NAME": "s",
                "BANK_BASE_URL_TEMPLATE": "https://attacker.example/{bank_code}",
            },
        )


def test_storage_settings_bound_reauth_days():
    environ = {"CONNECTIONS_TABLE_NAME": "connections", "TOKEN_KEY_ID": "alias/k"}
    assert parse_settings(StorageSettings, environ).reauth_days == 90
    assert parse_settings(StorageSettings, {**environ, "REAUTH_DAYS": "180"}).reauth_days == 180
    with pytest.raises(ConfigurationError, match="REAUTH_DAYS"):
        parse_settings(StorageSettings, {**environ, "REAUTH_DAYS": "181"})


def test_connect_settings_split_and_validate_the_allowlist():
    from aisp.settings import ConnectSettings

    settings = parse_settings(
        ConnectSettings,
        {"RETURN_URL_ALLOWLIST": " https://app.example.com/ , com.example.fintech:/oauth ,", "OAUTH_CALLBACK_URL": ""},
    )

    assert settings.return_url_allowlist == ("https://app.example.com/", "com.example.fintech:/oauth")
    assert [p.scheme for p in settings.return_url_prefixes] == ["https", "com.example.fintech"]
    assert settings.state_ttl_seconds == 600
    assert settings.oauth_callback_url == ""


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"RETURN_URL_ALLOWLIST": ""}, "RETURN_URL_ALLOWLIST"),
        ({"RETURN_URL_ALLOWLIST": "https://ok.example/,http://plain.example/"}, "RETURN_URL_ALLOWLIST"),
        (
            {"RETURN_URL_ALLOWLIST": "https://ok.example/", "OAUTH_CALLBACK_URL": "http://api.example/cb"},
            "OAUTH_CALLBACK_URL",
        ),
        ({"RETURN_URL_ALLOWLIST": "https://ok.example/", "STATE_TTL_SECONDS": "5"}, "STATE_TTL_SECONDS"),
        ({}, "RETURN_URL_ALLOWLIST"),
    ],
)
def test_connect_settings_refuse_bad_values(environ, variable):
    from aisp.settings import ConnectSettings

    with pytest.raises(ConfigurationError) as caught:
        parse_settings(ConnectSettings, environ)

    assert caught.value.details["variables"] == [variable]


def test_callback_url_may_be_configured_https_or_loopback_http():
    from aisp.settings import ConnectSettings

    for url in ("https://api.example.com/oauth/callback", "http://127.0.0.1:3000/oauth/callback"):
        settings = parse_settings(
            ConnectSettings, {"RETURN_URL_ALLOWLIST": "https://a.example/", "OAUTH_CALLBACK_URL": url}
        )
        assert settings.oauth_callback_url == url


def test_state_and_storage_settings():
    from aisp.settings import OAuthStateSettings

    assert parse_settings(OAuthStateSettings, {"OAUTH_STATES_TABLE_NAME": "states"}).oauth_states_table_name == "states"
    storage = parse_settings(StorageSettings, {"CONNECTIONS_TABLE_NAME": "conns", "TOKEN_KEY_ID": "alias/k"})
    assert (storage.reauth_days, storage.revoked_retention_days) == (90, 30)
