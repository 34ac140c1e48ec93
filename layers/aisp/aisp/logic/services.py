"""What the connection use cases run against, built once per container by cached factories (STYLE §2).

Tests pass their own :class:`ConnectionServices` (fakes, or moto-backed repositories with a counting bank gateway)
and :class:`ConnectPolicy` instead of these defaults. The use cases call the factories through this module
(``_wiring.get_connection_services()``), so a handler test can also replace them with ``monkeypatch.setattr``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache

from aisp import idempotency
from aisp.banks import BankRegistry, get_registry
from aisp.cursors import CursorSealer, clear_cursor_sealer, get_cursor_sealer
from aisp.logic.ports import (
    AccountDataGateway,
    BankGateway,
    Clock,
    ConnectionRepository,
    OAuthStateRepository,
    SystemClock,
)
from aisp.logic.remembered import RememberedConnections
from aisp.return_urls import AllowedPrefix
from aisp.settings import ConnectSettings, StorageSettings, load_settings

__all__ = [
    "AccountServices",
    "ConnectPolicy",
    "ConnectionServices",
    "clear_services",
    "get_account_services",
    "get_connect_policy",
    "get_connection_services",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionServices:
    """Ports and storage-wide settings of the connection use cases."""

    connections: ConnectionRepository
    states: OAuthStateRepository
    bank: BankGateway
    registry: BankRegistry
    clock: Clock = field(default_factory=SystemClock)
    # Days between strong authentications (REAUTH_DAYS), further capped by each bank's refresh_token_days.
    reauth_days: int = 90
    # How long a REVOKED record stays before its TTL purge.
    revoked_retention: timedelta = timedelta(days=30)
    # How long the app has to complete a login the bank authorized (COMPLETION_TTL_SECONDS).
    completion_ttl: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectPolicy:
    """How journeys start (connect function only)."""

    return_urls: tuple[AllowedPrefix, ...]
    state_ttl: timedelta = timedelta(minutes=10)
    # The registered redirect_uri; empty = https://{API domain of the request}/oauth/callback.
    callback_url: str = ""


@cache
def get_connection_services() -> ConnectionServices:
    """DynamoDB repositories, the STET bank gateway, the packaged registry and the system clock."""
    from aisp.dal import get_connection_repository, get_state_repository  # noqa: PLC0415 - PynamoDB on first use
    from aisp.stet.gateway import StetBankGateway  # noqa: PLC0415 - requests + signing on first use

    storage: StorageSettings = load_settings(StorageSettings)
    return ConnectionServices(
        connections=get_connection_repository(),
        states=get_state_repository(),
        bank=StetBankGateway(),
        registry=get_registry(),
        reauth_days=storage.reauth_days,
        revoked_retention=timedelta(days=storage.revoked_retention_days),
        completion_ttl=timedelta(seconds=storage.completion_ttl_seconds),
    )


@cache
def get_connect_policy() -> ConnectPolicy:
    """The connect function's policy from :class:`~aisp.settings.ConnectSettings`."""
    settings: ConnectSettings = load_settings(ConnectSettings)
    return ConnectPolicy(
        return_urls=settings.return_url_prefixes,
        state_ttl=timedelta(seconds=settings.state_ttl_seconds),
        callback_url=settings.oauth_callback_url,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountServices:
    """Ports of the consent and account-query use cases, on top of the connection services (tokens, registry)."""

    connections: ConnectionServices
    bank: AccountDataGateway
    # Called on the first cursor of a request: only transaction paging pays for the key (one KMS call a container).
    cursors: Callable[[], CursorSealer] = get_cursor_sealer
    # Banks queried at once by GET /v1/accounts.
    max_workers: int = 4
    # Connections this container read, so that a read-only bank call overlaps the next read (None: never overlap).
    remembered: RememberedConnections | None = None


@cache
def get_account_services() -> AccountServices:
    """The account use cases over :func:`get_connection_services` and the STET data gateway."""
    from aisp.stet.gateway import StetAccountGateway  # noqa: PLC0415 - requests + signing on first use

    return AccountServices(
        connections=get_connection_services(), bank=StetAccountGateway(), remembered=RememberedConnections()
    )


def clear_services() -> None:
    """Forget the cached services and policy (tests, configuration changes)."""
    get_connection_services.cache_clear()
    get_connect_policy.cache_clear()
    get_account_services.cache_clear()
    clear_cursor_sealer()
    idempotency.clear()
