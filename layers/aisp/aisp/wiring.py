"""Where the gateway's objects are built: one factory per object, run on first use, kept for the container's life.

Handlers take their services from here and hand them to the use cases, which never build anything themselves.
Each factory imports what it builds (PynamoDB, requests, boto3) inside its body, so importing this module costs
nothing at init. Tests replace an object with ``factory.provide(fake)`` and forget them all with :func:`reset`.
Design: ``docs/architecture.md``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aisp.settings import (
    AuditSettings,
    BankSettings,
    ConnectSettings,
    CursorSettings,
    IdempotencySettings,
    RefresherSettings,
    StorageSettings,
    SyncSettings,
    SyncSlotSettings,
    load_settings,
)

if TYPE_CHECKING:
    from aisp.aws.kms import TokenCipher
    from aisp.aws.logs import LogGroupWriter
    from aisp.banks import BankRegistry
    from aisp.cursors import CursorSealer
    from aisp.dal import DynamoConnectionRepository, DynamoOAuthStateRepository
    from aisp.idempotency import IdempotencyStore
    from aisp.logic.ports import EventPublisher, QuotaLedger, TransactionStore
    from aisp.logic.refresh.scheduler import RefresherServices, RefreshPolicy
    from aisp.logic.services import AccountServices, ConnectionServices, ConnectPolicy
    from aisp.logic.sync.scheduler import SyncPolicy, SyncServices
    from aisp.stet.factory import BankClients
    from aisp.stet.gateway import StetAccountGateway, StetBankGateway

__all__ = [
    "Factory",
    "account_gateway",
    "account_services",
    "audit_writer",
    "bank_clients",
    "bank_gateway",
    "connect_policy",
    "connection_repository",
    "connection_services",
    "idempotency_store",
    "sync_events",
    "live_events",
    "quota_ledger",
    "transaction_store",
    "cursor_sealer",
    "refresh_policy",
    "refresher_services",
    "registry",
    "reset",
    "state_repository",
    "sync_policy",
    "sync_services",
    "token_cipher",
]

_UNSET: Any = object()


class Factory[T]:
    """Builds its object once (thread-safe: the refresher's workers may ask together) and hands out that one."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: T = _UNSET
        self.__doc__ = build.__doc__
        self.__name__ = build.__name__

    def __call__(self) -> T:
        value = self._value
        if value is _UNSET:
            with self._lock:
                if self._value is _UNSET:
                    self._value = self._build()
                value = self._value
        return value

    def provide(self, value: T) -> None:
        """Use ``value`` instead of building one (tests, the local stack)."""
        with self._lock:
            self._value = value

    def reset(self) -> None:
        """Build again on next use."""
        with self._lock:
            self._value = _UNSET


_FACTORIES: list[Factory[Any]] = []


def _factory[T](build: Callable[[], T]) -> Factory[T]:
    made = Factory(build)
    _FACTORIES.append(made)
    return made


def reset() -> None:
    """Forget every object built here, the settings they were built from and the bank clients' connections."""
    for made in _FACTORIES:
        made.reset()
    load_settings.cache_clear()
    from aisp.dal.tables import reset_connections  # noqa: PLC0415 - PynamoDB only if it was ever loaded

    reset_connections()


# ----------------------------------------------------------------------------------------------------------------
# Configuration-wide objects
# ----------------------------------------------------------------------------------------------------------------


@_factory
def registry() -> BankRegistry:
    """The packaged bank registry, resolved for ``BANK_ENVIRONMENT``."""
    from aisp.banks import load_registry  # noqa: PLC0415

    return load_registry(environment=load_settings(BankSettings).bank_environment)


@_factory
def token_cipher() -> TokenCipher:
    """The KMS envelope cipher of the token key (its data key is made on the first seal)."""
    from aisp.aws.kms import EnvelopeCipher  # noqa: PLC0415 - boto3 on first use

    return EnvelopeCipher(key_id=load_settings(StorageSettings).token_key_id)


@_factory
def cursor_sealer() -> CursorSealer:
    """The pagination cursor sealer: one KMS ``GenerateMac`` derives its key, on the first cursor of a container."""
    from aisp.aws.kms import derive_cursor_key  # noqa: PLC0415 - boto3 on first use
    from aisp.cursors import KEY_LABEL, CursorSealer  # noqa: PLC0415

    settings = load_settings(CursorSettings)
    key = derive_cursor_key(settings.cursor_key_id, KEY_LABEL)
    return CursorSealer(key, ttl_seconds=settings.cursor_ttl_seconds)


@_factory
def bank_clients() -> BankClients:
    """One keep-alive, mTLS, signing STET client per bank, rebuilt when the credentials secret rotates."""
    from aisp.stet.factory import BankClients  # noqa: PLC0415 - requests + signing on first use

    return BankClients(registry(), load_settings(BankSettings))


# ----------------------------------------------------------------------------------------------------------------
# Adapters
# ----------------------------------------------------------------------------------------------------------------


@_factory
def connection_repository() -> DynamoConnectionRepository:
    """Connections in DynamoDB; the token cipher is built on the first token read or write."""
    from aisp.dal import DynamoConnectionRepository  # noqa: PLC0415 - PynamoDB on first use

    return DynamoConnectionRepository(cipher=token_cipher)


@_factory
def state_repository() -> DynamoOAuthStateRepository:
    """One-time OAuth states in DynamoDB."""
    from aisp.dal import DynamoOAuthStateRepository  # noqa: PLC0415 - PynamoDB on first use

    return DynamoOAuthStateRepository()


@_factory
def bank_gateway() -> StetBankGateway:
    """The banks' OAuth endpoints over :func:`bank_clients`."""
    from aisp.stet.gateway import StetBankGateway  # noqa: PLC0415

    return StetBankGateway(bank_clients)


@_factory
def account_gateway() -> StetAccountGateway:
    """The banks' AISP data endpoints over :func:`bank_clients`."""
    from aisp.stet.gateway import StetAccountGateway  # noqa: PLC0415

    return StetAccountGateway(bank_clients)


@_factory
def idempotency_store() -> IdempotencyStore:
    """Where keyed writes (``Idempotency-Key``) are recorded: ``IDEMPOTENCY_TABLE_NAME``, for the configured TTL."""
    from aisp.idempotency import IdempotencyStore  # noqa: PLC0415

    settings = load_settings(IdempotencySettings)
    return IdempotencyStore(
        table_name=settings.idempotency_table_name, expires_after_seconds=settings.idempotency_ttl_seconds
    )


@_factory
def audit_writer() -> LogGroupWriter:
    """The audit shipper's writer to ``AUDIT_LOG_GROUP_NAME``."""
    from aisp.aws.logs import LogGroupWriter  # noqa: PLC0415 - boto3 on first use

    return LogGroupWriter(load_settings(AuditSettings).audit_log_group_name)


# ----------------------------------------------------------------------------------------------------------------
# What the use cases run against
# ----------------------------------------------------------------------------------------------------------------


@_factory
def connection_services() -> ConnectionServices:
    """The connection use cases' ports and storage-wide settings."""
    from aisp.clock import SystemClock  # noqa: PLC0415
    from aisp.logic.services import ConnectionServices  # noqa: PLC0415

    storage = load_settings(StorageSettings)
    return ConnectionServices(
        connections=connection_repository(),
        states=state_repository(),
        bank=bank_gateway(),
        registry=registry(),
        clock=SystemClock(),
        reauth_days=storage.reauth_days,
        revoked_retention=timedelta(days=storage.revoked_retention_days),
        completion_ttl=timedelta(seconds=storage.completion_ttl_seconds),
        idempotency=idempotency_store,
        transactions=transaction_store(),
        sync_runs_per_day=load_settings(SyncSlotSettings).sync_runs_per_day,
    )


@_factory
def connect_policy() -> ConnectPolicy:
    """How the connect function starts journeys."""
    from aisp.logic.services import ConnectPolicy  # noqa: PLC0415

    settings = load_settings(ConnectSettings)
    return ConnectPolicy(
        return_urls=settings.return_url_prefixes,
        state_ttl=timedelta(seconds=settings.state_ttl_seconds),
        callback_url=settings.oauth_callback_url,
    )


@_factory
def quota_ledger() -> QuotaLedger:
    """The unattended-access ledger (``QuotaTable``, named by ``QUOTA_TABLE_NAME`` on first use)."""
    from aisp.dal.quota import DynamoQuotaLedger  # noqa: PLC0415

    return DynamoQuotaLedger()


@_factory
def transaction_store() -> TransactionStore:
    """The synced transactions (``SyncTable``; :class:`~aisp.settings.SyncSettings` read on first use), sealed with
    the tokens' cipher."""
    from aisp.dal.sync import DynamoTransactionStore  # noqa: PLC0415

    return DynamoTransactionStore(token_cipher)


def _sync_bus(*, request_path: bool) -> EventPublisher | None:
    bus = load_settings(SyncSettings).event_bus_name
    if not bus:
        return None
    from aisp.aws.messaging import EventBridgePublisher  # noqa: PLC0415 - its client (boto3) on the first event

    return EventBridgePublisher(bus, request_path=request_path)


@_factory
def sync_events() -> EventPublisher | None:
    """The fintech's bus for the scheduled sync's events, ``TransactionsUpdated`` and ``SyncFailed``
    (``EVENT_BUS_NAME`` of :class:`~aisp.settings.SyncSettings`); ``None``: no bus named."""
    return _sync_bus(request_path=False)


@_factory
def live_events() -> EventPublisher | None:
    """The same bus for a live read's ``TransactionsUpdated``, published while the user waits: one short attempt."""
    return _sync_bus(request_path=True)


@_factory
def account_services() -> AccountServices:
    """The consent and account use cases' ports, over :func:`connection_services`; :func:`live_events` is asked for
    on a live read's first event."""
    from aisp.logic.remembered import RememberedConnections  # noqa: PLC0415
    from aisp.logic.services import AccountServices  # noqa: PLC0415

    return AccountServices(
        connections=connection_services(),
        bank=account_gateway(),
        cursors=cursor_sealer,
        quota=quota_ledger(),
        transactions=transaction_store(),
        remembered=RememberedConnections(),
        events=live_events,
    )


@_factory
def sync_services() -> SyncServices:
    """What the scheduled sync uses: the account services, the connections' index (the catch-up), the fintech's bus
    and the fan-out queue."""
    from aisp.aws.messaging import SqsFanoutQueue  # noqa: PLC0415 - boto3 on first use
    from aisp.logic.sync.scheduler import SyncServices  # noqa: PLC0415

    queue_url = load_settings(SyncSettings).sync_fanout_queue_url
    return SyncServices(
        accounts=account_services(),
        keys=connection_repository(),
        events=sync_events(),
        fanout=SqsFanoutQueue(queue_url) if queue_url else None,
    )


@_factory
def sync_policy() -> SyncPolicy:
    """How a sync run behaves, from :class:`~aisp.settings.SyncSettings`."""
    from aisp.logic.sync.scheduler import SyncPolicy  # noqa: PLC0415

    settings = load_settings(SyncSettings)
    return SyncPolicy(
        runs_per_day=settings.sync_runs_per_day,
        workers=settings.sync_workers,
        rate_per_second=settings.sync_rate_per_second,
    )


@_factory
def refresh_policy() -> RefreshPolicy:
    """How a refresher run behaves, from :class:`~aisp.settings.RefresherSettings`."""
    from aisp.logic.refresh.scheduler import RefreshPolicy  # noqa: PLC0415

    settings = load_settings(RefresherSettings)
    return RefreshPolicy(
        margin=timedelta(minutes=settings.refresh_margin_minutes),
        workers=settings.refresh_workers,
        lease_seconds=settings.refresh_lease_seconds,
        time_reserve_seconds=settings.refresh_time_reserve_seconds,
        rate_per_second=settings.refresh_rate_per_second,
        backoff_base_seconds=settings.refresh_backoff_base_seconds,
        backoff_max_seconds=settings.refresh_backoff_max_seconds,
        notice_days=settings.expiring_notice_days,
    )


@_factory
def refresher_services() -> RefresherServices:
    """The refresher's ports: connections, the banks' OAuth endpoints, the event bus and the fan-out queue."""
    from aisp.aws.messaging import EventBridgePublisher, SqsFanoutQueue  # noqa: PLC0415 - boto3 on first use
    from aisp.clock import SystemClock  # noqa: PLC0415
    from aisp.logic.refresh.scheduler import RefresherServices  # noqa: PLC0415

    settings = load_settings(RefresherSettings)
    queue_url = settings.refresh_fanout_queue_url
    return RefresherServices(
        connections=connection_repository(),
        bank=bank_gateway(),
        events=EventBridgePublisher(settings.event_bus_name),
        fanout=SqsFanoutQueue(queue_url) if queue_url else None,
        clock=SystemClock(),
        registry=registry(),
    )
