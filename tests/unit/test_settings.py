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
