"""Environment configuration as pydantic models, validated once per container (STYLE.md §4).

Each function reads the model(s) it needs with :func:`load_settings`; logic and storage receive values, never
``os.environ``. A missing or invalid variable fails with one :class:`~aisp.errors.ConfigurationError` naming every
offending variable (never its value, which could be a secret name or URL worth keeping out of error trackers).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aisp.errors import ConfigurationError
from aisp.return_urls import LOOPBACK_HOSTS, AllowedPrefix, parse_allowlist

BankEnvironment = Literal["sandbox", "live", "local"]


class EnvModel(BaseModel):
    """Base of the environment models: fields are aliased to their UPPER_SNAKE variable names."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class BankSettings(EnvModel):
    """How to reach the banks and where the TPP credentials are."""

    bank_environment: Annotated[BankEnvironment, Field(alias="BANK_ENVIRONMENT")]
    bank_credentials_secret_name: Annotated[str, Field(alias="BANK_CREDENTIALS_SECRET_NAME", min_length=1)]
    # Only for `local`: e.g. https://127.0.0.1:8443/{bank_code} (API, mTLS) and http://127.0.0.1:8080/{bank_code}
    # (the login screens a person's browser opens).
    bank_base_url_template: Annotated[str, Field(alias="BANK_BASE_URL_TEMPLATE")] = ""
    bank_authorize_url_template: Annotated[str, Field(alias="BANK_AUTHORIZE_URL_TEMPLATE")] = ""
    # Only for `local`: the CA that signed the offline sandbox's server certificate.
    bank_ca_bundle: Annotated[str, Field(alias="BANK_CA_BUNDLE")] = ""
    bank_timeout_seconds: Annotated[float, Field(alias="BANK_TIMEOUT_SECONDS", gt=0, le=60)] = 10.0
    credentials_max_age_seconds: Annotated[int, Field(alias="CREDENTIALS_MAX_AGE_SECONDS", ge=0, le=86400)] = 300

    @field_validator("bank_base_url_template", "bank_authorize_url_template")
    @classmethod
    def _template_shape(cls, value: str) -> str:
        if value and ("{bank_code}" not in value or urlsplit(value).scheme not in {"http", "https"}):
            raise ValueError("must be an http(s) URL containing {bank_code}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _local_needs_templates(self) -> BankSettings:
        if self.bank_environment == "local":
            if not self.bank_base_url_template:
                raise ValueError("BANK_BASE_URL_TEMPLATE is required when BANK_ENVIRONMENT=local")
            if urlsplit(self.bank_base_url_template).scheme != "https":
                raise ValueError("BANK_BASE_URL_TEMPLATE must be https: bank calls always use mTLS")
        elif self.bank_base_url_template or self.bank_authorize_url_template or self.bank_ca_bundle:
            # Guard against pointing a live deployment at an arbitrary host or trusting a private CA.
            raise ValueError("BANK_*_URL_TEMPLATE and BANK_CA_BUNDLE are only allowed when BANK_ENVIRONMENT=local")
        return self


class StorageSettings(EnvModel):
    """Where connections live and how their tokens are encrypted."""

    connections_table_name: Annotated[str, Field(alias="CONNECTIONS_TABLE_NAME", min_length=3)]
    token_key_id: Annotated[str, Field(alias="TOKEN_KEY_ID", min_length=1)]
    reauth_days: Annotated[int, Field(alias="REAUTH_DAYS", ge=1, le=180)] = 90
    # How long a REVOKED record (no tokens left) stays visible before DynamoDB TTL purges it.
    revoked_retention_days: Annotated[int, Field(alias="REVOKED_RETENTION_DAYS", ge=1, le=400)] = 30


class OAuthStateSettings(EnvModel):
    """Where pending OAuth ``state`` values live (the connect and callback functions only)."""

    oauth_states_table_name: Annotated[str, Field(alias="OAUTH_STATES_TABLE_NAME", min_length=3)]


class ConnectSettings(EnvModel):
    """How a connection journey starts (the connect function only)."""

    # The redirect_uri registered at the bank; empty = https://{API domain of the request}/oauth/callback.
    oauth_callback_url: Annotated[str, Field(alias="OAUTH_CALLBACK_URL")] = ""
    # Comma-separated prefixes a return_url must start with (see aisp.return_urls).
    return_url_allowlist: Annotated[tuple[str, ...], Field(alias="RETURN_URL_ALLOWLIST", min_length=1)]
    state_ttl_seconds: Annotated[int, Field(alias="STATE_TTL_SECONDS", ge=60, le=3600)] = 600

    @field_validator("oauth_callback_url")
    @classmethod
    def _callback_shape(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        secure = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)
        if not secure or not parts.hostname or parts.query or parts.fragment or "@" in parts.netloc:
            raise ValueError("must be an https URL (http only for a loopback host) without query or fragment")
        return value

    @field_validator("return_url_allowlist", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(entry.strip() for entry in value.split(",") if entry.strip())
        return value

    @field_validator("return_url_allowlist")
    @classmethod
    def _entries_are_valid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, entry in enumerate(value):
            try:
                parse_allowlist([entry])
            except ValueError as exc:
                raise ValueError(f"entry {index + 1}: {exc}") from None
        return value

    @property
    def return_url_prefixes(self) -> tuple[AllowedPrefix, ...]:
        """The allowlist, parsed and normalised."""
        return parse_allowlist(self.return_url_allowlist)


def parse_settings[ModelT: EnvModel](model: type[ModelT], environ: Mapping[str, str]) -> ModelT:
    """Build ``model`` from ``environ``.

    Parameters
    ----------
    model
        The settings model to build.
    environ
        The variables to read (usually ``os.environ``).

    Returns
    -------
    ModelT
        The validated settings.

    Raises
    ------
    ConfigurationError
        Naming each missing or invalid variable and why, without its value.
    """
    try:
        return model.model_validate(dict(environ))
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in error["loc"]) or model.__name__
            problems.append(f"{where}: {error['msg']}")
        raise ConfigurationError(
            "invalid environment configuration: " + "; ".join(problems),
            details={"model": model.__name__, "variables": [p.split(":", 1)[0] for p in problems]},
        ) from None


@cache
def load_settings[ModelT: EnvModel](model: type[ModelT]) -> ModelT:
    """Read ``model`` from the process environment once per container (cached)."""
    return parse_settings(model, os.environ)
