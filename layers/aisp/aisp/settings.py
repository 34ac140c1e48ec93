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

    # Built on first use: a function loads only the settings it needs (cold start).
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, defer_build=True)


class BankSettings(EnvModel):
    """How to reach the banks and where the TPP credentials are."""

    bank_environment: Annotated[BankEnvironment, Field(alias="BANK_ENVIRONMENT")]
    bank_credentials_secret_name: Annotated[str, Field(alias="BANK_CREDENTIALS_SECRET_NAME", min_length=1)]
    # Only for `local`: e.g. https://127.0.0.1:8443/{bank_code} (API, mTLS) and http://127.0.0.1:8080/{bank_code}
    # (the login screens a person's browser opens).
    bank_base_url_template: Annotated[str, Field(alias="BANK_BASE_URL_TEMPLATE")] = ""
    bank_authorize_url_template: Annotated[str, Field(alias="BANK_AUTHORIZE_URL_TEMPLATE")] = ""
    # Only for `local`: the CA that signed the offline sandbox's server certificate, as a file path (make run) or
    # as PEM text (sam local: a container cannot see the host's files).
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
    # How long the app has to complete a login the bank authorized; its tokens are revoked after that.
    completion_ttl_seconds: Annotated[int, Field(alias="COMPLETION_TTL_SECONDS", ge=30, le=3600)] = 300


class CallerSettings(EnvModel):
    """Who may call the read routes: the scopes that make a token a server token (template parameters)."""

    unattended_scope: Annotated[str, Field(alias="UNATTENDED_SCOPE", min_length=1, max_length=200)] = "aisp/unattended"
    attended_proxy_scope: Annotated[str, Field(alias="ATTENDED_PROXY_SCOPE", min_length=1, max_length=200)] = (
        "aisp/attended-proxy"
    )
    # A backend token with the attended-proxy scope may forward the present user's PSU-IP-Address (off by default).
    trust_forwarded_psu_ip: Annotated[bool, Field(alias="TRUST_FORWARDED_PSU_IP")] = False


class QuotaSettings(EnvModel):
    """The unattended-access ledger (AccountsFunction)."""

    quota_table_name: Annotated[str, Field(alias="QUOTA_TABLE_NAME", min_length=3)]


def _queue_url(value: str) -> str:
    if value and urlsplit(value).scheme not in {"https", "http"}:
        raise ValueError("must be an SQS queue URL")
    return value


class SyncSlotSettings(EnvModel):
    """A connection's sync times (``docs/sync.md``, The schedule): what the connect flow needs to schedule the first."""

    # Syncs a Paris day per connection (SyncRunsPerDay; BPCE allows 4 unattended reads).
    sync_runs_per_day: Annotated[int, Field(alias="SYNC_RUNS_PER_DAY", ge=1, le=4)] = 2


class SyncSettings(SyncSlotSettings):
    """The synced transactions and their change feed (``docs/sync.md``)."""

    sync_table_name: Annotated[str, Field(alias="SYNC_TABLE_NAME", min_length=3)]
    # How long a synced transaction is kept after its day (TransactionRetentionDays).
    transaction_retention_days: Annotated[int, Field(alias="TRANSACTION_RETENTION_DAYS", ge=30, le=3650)] = 400
    # AccountSyncFunction: concurrent syncs, connections synced a second (sizes the fan-out, bench/README.md), and
    # the queue of shard groups when one invocation cannot sync all due connections (empty: never fan out).
    sync_workers: Annotated[int, Field(alias="SYNC_WORKERS", ge=1, le=64)] = 16
    sync_rate_per_second: Annotated[float, Field(alias="SYNC_RATE_PER_SECOND", gt=0, le=1000)] = 10.0
    sync_fanout_queue_url: Annotated[str, Field(alias="SYNC_FANOUT_QUEUE_URL")] = ""

    @field_validator("sync_fanout_queue_url")
    @classmethod
    def _queue_url_shape(cls, value: str) -> str:
        return _queue_url(value)

    # Where TransactionsUpdated and SyncFailed go (EventBusName); empty: no events.
    event_bus_name: Annotated[str, Field(alias="EVENT_BUS_NAME")] = ""


class AuditSettings(EnvModel):
    """Where the audit trail is kept (AuditShipperFunction only): the template's ``AuditLogGroup``."""

    audit_log_group_name: Annotated[str, Field(alias="AUDIT_LOG_GROUP_NAME", min_length=1, max_length=512)]


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


class RefresherSettings(EnvModel):
    """The token refresher (TokenRefresherFunction only); ``docs/configuration.md`` explains each value."""

    # Refresh access tokens expiring within this margin (template Parameter RefreshMarginMinutes).
    refresh_margin_minutes: Annotated[int, Field(alias="REFRESH_MARGIN_MINUTES", ge=1, le=50)] = 10
    # The fintech's EventBridge bus (name or ARN) for ConnectionExpiring / ConnectionReauthRequired.
    event_bus_name: Annotated[str, Field(alias="EVENT_BUS_NAME", min_length=1)]
    # SQS queue receiving shard ranges when one invocation cannot do all due records; empty = never fan out.
    refresh_fanout_queue_url: Annotated[str, Field(alias="REFRESH_FANOUT_QUEUE_URL")] = ""
    # Concurrent refreshes per invocation (threads sharing the per-bank keep-alive clients).
    refresh_workers: Annotated[int, Field(alias="REFRESH_WORKERS", ge=1, le=128)] = 32
    # How long a refresh may hold a connection; above the bank timeout (3 s connect + BANK_TIMEOUT_SECONDS read).
    refresh_lease_seconds: Annotated[int, Field(alias="REFRESH_LEASE_SECONDS", ge=15, le=900)] = 60
    # Stop starting refreshes when less than this is left of the invocation (lets in-flight ones finish).
    refresh_time_reserve_seconds: Annotated[int, Field(alias="REFRESH_TIME_RESERVE_SECONDS", ge=1, le=120)] = 20
    # Refreshes per second one invocation sustains (bench/refresher.py); sizes the fan-out.
    refresh_rate_per_second: Annotated[int, Field(alias="REFRESH_RATE_PER_SECOND", ge=1, le=10_000)] = 200
    # Transient failures: next attempt after min(base * 2**(failures-1), max), with jitter.
    refresh_backoff_base_seconds: Annotated[int, Field(alias="REFRESH_BACKOFF_BASE_SECONDS", ge=1, le=3600)] = 300
    refresh_backoff_max_seconds: Annotated[int, Field(alias="REFRESH_BACKOFF_MAX_SECONDS", ge=60, le=86_400)] = 3600
    # ConnectionExpiring thresholds, in days before reauth_due_at (comma-separated).
    expiring_notice_days: Annotated[tuple[int, ...], Field(alias="EXPIRING_NOTICE_DAYS", min_length=1)] = (14, 7, 1)

    @field_validator("expiring_notice_days", mode="before")
    @classmethod
    def _split_days(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(entry.strip() for entry in value.split(",") if entry.strip())
        return value

    @field_validator("expiring_notice_days")
    @classmethod
    def _positive_distinct(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(days < 1 or days > 180 for days in value):  # noqa: PLR2004 - the longest BPCE refresh token life
            raise ValueError("each threshold must be between 1 and 180 days")
        return tuple(sorted(set(value), reverse=True))

    @field_validator("refresh_fanout_queue_url")
    @classmethod
    def _queue_url_shape(cls, value: str) -> str:
        return _queue_url(value)

    @model_validator(mode="after")
    def _backoff_order(self) -> RefresherSettings:
        if self.refresh_backoff_max_seconds < self.refresh_backoff_base_seconds:
            raise ValueError("REFRESH_BACKOFF_MAX_SECONDS must be >= REFRESH_BACKOFF_BASE_SECONDS")
        return self


class IdempotencySettings(EnvModel):
    """Powertools idempotency records of the keyed writes (ConsentsFunction, ConnectFunction)."""

    idempotency_table_name: Annotated[str, Field(alias="IDEMPOTENCY_TABLE_NAME", min_length=3)]
    # How long a completed request is replayed for the same Idempotency-Key (the IETF draft suggests at least 24 h).
    idempotency_ttl_seconds: Annotated[int, Field(alias="IDEMPOTENCY_TTL_SECONDS", ge=60, le=7 * 86400)] = 86400


class CursorSettings(EnvModel):
    """Sealed transaction cursors (AccountsFunction only): the KMS HMAC key the sealing key is derived from."""

    cursor_key_id: Annotated[str, Field(alias="CURSOR_KEY_ID", min_length=1)]
    # A next_cursor stays usable this long; the bank's paging links are stateless, so this only bounds replay.
    cursor_ttl_seconds: Annotated[int, Field(alias="CURSOR_TTL_SECONDS", ge=60, le=86400)] = 3600
