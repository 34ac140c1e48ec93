"""PynamoDB models of the three tables this package writes (their key schemas mirror template.yaml).

Nothing here reads the environment at import: ``Meta.table_name`` is a descriptor that asks the settings model on
first use, and ``region``/``host`` are left to botocore, which reads ``AWS_REGION``/``AWS_DEFAULT_REGION`` and
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_DYNAMODB``) when the client is created, so the local stack and a moto
server work without code changes.

``ConnectionsTable`` item (one per user × bank):

=====================  ====  ==========================================================================================
attribute              type  meaning
=====================  ====  ==========================================================================================
user_id                S     partition key: the JWT ``sub``
bank_code              S     sort key: establishment code (cdetab)
connection_id          S     stable id, kept across reconnections
status                 S     PENDING | AUTHORIZED | ACTIVE | REAUTH_REQUIRED | FAILED | REVOKED
status_reason          S     why FAILED or REAUTH_REQUIRED (``aisp.models.connection.StatusReason``)
journey_expires_at     S     when the latest login link expires (a PENDING connection is FAILED after it)
created_at/updated_at  S     ISO-8601 UTC
connected_at           S     last successful strong authentication (code exchange)
access_expires_at      S     access token expiry
refresh_issued_at      S     when the refresh token was issued (the last SCA)
reauth_due_at          S     when the user must authenticate again (refresh token lifetime)
revoked_at             S     when the user deleted the connection
tokens                 B     envelope-encrypted ``{access_token, refresh_token}`` (aisp.aws.kms), bound to user + bank
consent                S     JSON ConsentSnapshot (issue 5)
pending_tokens         B     the tokens of a login awaiting completion, sealed like ``tokens``        } an
pending                S     JSON PendingAuthorization: its dates, deadline and where the connection  } authorization
                                   goes back to if it is not completed                                } awaiting its
authorization_id       S     the authorization's id, which its completion value names (conditions)     } completion
version                N     optimistic lock: every write is conditional on the version read, and bumps it
refresh_shard          N     0..15, stable hash of user + bank  } RefreshDueIndex keys: present only while ACTIVE
refresh_due_at         N     epoch seconds = access expiry     } with a refresh token (sparse index); after a
                                   transient refresh failure: next attempt + margin; while a ConnectionReauthRequired
                                   event is pending on a REAUTH_REQUIRED record: when to send it; while an
                                   authorization awaits completion: at the latest its deadline (then revoked)
purge_at               N     TTL: set on REVOKED records only
lease_until            N     epoch seconds: a refresh is in progress until then (absent = free)      } refresh
lease_owner            S     who holds the lease (``refresher:<run>:<n>`` or ``on-demand:<uuid>``)  } lease
refresh_failures       N     consecutive transient refresh failures (backoff exponent), reset on success
refresh_last_error     S     last failure kind: ``429``, ``503``, ``timeout``... (never bank text)
expiry_notices         NS    ``ConnectionExpiring`` thresholds already sent (days: 14, 7, 1); reset by a new SCA
reauth_notice          S     PENDING | SENT: the ``ConnectionReauthRequired`` event of a REAUTH_REQUIRED record
reauth_notified_at     S     when that event was sent
=====================  ====  ==========================================================================================

The lease, failure and notice attributes are the refresher's bookkeeping: writing them never bumps ``version``
(``docs/refresh.md``, The lease).

``OAuthStatesTable`` holds the two one-time values of a login, each keyed by the SHA-256 of its value: the OAuth
``state`` (:class:`OAuthStateRecord`) and the completion value the callback hands the app
(:class:`CompletionRecord`, key ``completion:<sha256>``, so the two kinds never collide).

``QuotaTable`` (:class:`QuotaRecord`) counts unattended reads: ``pk`` = ``bank_code#user_id``, ``sk`` =
``day#method#account_id``, ``used``, ``quota_limit``, ``exhausted`` (the bank said so), TTL ``expires_at``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    NumberAttribute,
    NumberSetAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model

__all__ = [
    "COMPLETION_KEY_PREFIX",
    "REFRESH_DUE_INDEX",
    "SYNC_DUE_INDEX",
    "CompletionRecord",
    "ConnectionRecord",
    "OAuthStateRecord",
    "QuotaRecord",
    "RefreshDueIndex",
    "SyncDueIndex",
    "SyncRecord",
    "reset_connections",
]

REFRESH_DUE_INDEX = "RefreshDueIndex"
SYNC_DUE_INDEX = "SyncDueIndex"


class _TableName:
    """A ``Meta.table_name`` read from the settings on each access (cached there), never at import."""

    def __init__(self, getter: Callable[[], str]) -> None:
        self._getter = getter

    def __get__(self, instance: Any, owner: Any) -> str:
        return self._getter()


def _connections_table() -> str:
    from aisp.settings import StorageSettings, load_settings  # noqa: PLC0415

    settings: StorageSettings = load_settings(StorageSettings)
    return settings.connections_table_name


def _states_table() -> str:
    from aisp.settings import OAuthStateSettings, load_settings  # noqa: PLC0415

    settings: OAuthStateSettings = load_settings(OAuthStateSettings)
    return settings.oauth_states_table_name


def _quota_table() -> str:
    from aisp.settings import QuotaSettings, load_settings  # noqa: PLC0415

    settings: QuotaSettings = load_settings(QuotaSettings)
    return settings.quota_table_name


class RefreshDueIndex(GlobalSecondaryIndex["ConnectionRecord"]):  # type: ignore[no-untyped-call]
    """Sparse GSI: connections with a live refresh token, by shard and next refresh time (keys only)."""

    class Meta:
        index_name = REFRESH_DUE_INDEX
        projection = KeysOnlyProjection()

    refresh_shard = NumberAttribute(hash_key=True)
    refresh_due_at = NumberAttribute(range_key=True)


class ConnectionRecord(Model):
    """A user's connection to one bank (see the module docstring for every attribute)."""

    class Meta:
        table_name = _TableName(_connections_table)
        region = None  # botocore: AWS_REGION / AWS_DEFAULT_REGION
        host = None  # botocore: AWS_ENDPOINT_URL(_DYNAMODB) when set
        connect_timeout_seconds = 2
        read_timeout_seconds = 5
        # The refresher's worker threads share one botocore client: one pooled connection per thread.
        max_pool_connections = 64

    user_id = UnicodeAttribute(hash_key=True)
    bank_code = UnicodeAttribute(range_key=True)
    connection_id = UnicodeAttribute()
    status = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    connected_at = UTCDateTimeAttribute(null=True)
    access_expires_at = UTCDateTimeAttribute(null=True)
    refresh_issued_at = UTCDateTimeAttribute(null=True)
    reauth_due_at = UTCDateTimeAttribute(null=True)
    revoked_at = UTCDateTimeAttribute(null=True)
    tokens = BinaryAttribute(null=True, legacy_encoding=False)
    consent = UnicodeAttribute(null=True)
    version = NumberAttribute(default=0)
    refresh_shard = NumberAttribute(null=True)
    refresh_due_at = NumberAttribute(null=True)
    purge_at = TTLAttribute(null=True)
    lease_until = NumberAttribute(null=True)
    lease_owner = UnicodeAttribute(null=True)
    refresh_failures = NumberAttribute(null=True)
    refresh_last_error = UnicodeAttribute(null=True)
    expiry_notices = NumberSetAttribute(null=True)
    reauth_notice = UnicodeAttribute(null=True)
    reauth_notified_at = UTCDateTimeAttribute(null=True)
    status_reason = UnicodeAttribute(null=True)
    journey_expires_at = UTCDateTimeAttribute(null=True)
    pending_tokens = BinaryAttribute(null=True, legacy_encoding=False)
    pending = UnicodeAttribute(null=True)
    authorization_id = UnicodeAttribute(null=True)

    refresh_due_index = RefreshDueIndex()


class OAuthStateRecord(Model):
    """A pending authorization request, keyed by the SHA-256 of its ``state``; single use; TTL ``expires_at``."""

    class Meta:
        table_name = _TableName(_states_table)
        region = None
        host = None
        connect_timeout_seconds = 2
        read_timeout_seconds = 5

    state_hash = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute()
    bank_code = UnicodeAttribute()
    connection_id = UnicodeAttribute()
    return_url = UnicodeAttribute()
    redirect_uri = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    expires_at = TTLAttribute()
    consumed_at = UTCDateTimeAttribute(null=True)
    # PKCE's code_verifier, sealed with the state itself (aisp.pkce): only the state's holder can open it.
    code_verifier = BinaryAttribute(null=True, legacy_encoding=False)


COMPLETION_KEY_PREFIX = "completion:"


class CompletionRecord(Model):
    """A completion value (stored as ``completion:`` + its SHA-256) in ``OAuthStatesTable``: single use, for one user
    and one authorization, until ``valid_until``; kept a day longer (TTL) so a late use is recognised as one."""

    class Meta:
        table_name = _TableName(_states_table)
        region = None
        host = None
        connect_timeout_seconds = 2
        read_timeout_seconds = 5

    key = UnicodeAttribute(hash_key=True, attr_name="state_hash")
    user_id = UnicodeAttribute()
    bank_code = UnicodeAttribute()
    connection_id = UnicodeAttribute()
    authorization_id = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    valid_until = UTCDateTimeAttribute()
    purge_at = TTLAttribute(attr_name="expires_at")
    consumed_at = UTCDateTimeAttribute(null=True)
    outcome = UnicodeAttribute(null=True)


class QuotaRecord(Model):
    """One counter of unattended reads in ``QuotaTable``: ``bank_code#user_id`` and ``day#method#account_id`` (``-``
    for a method of no account); forgotten (TTL) a day after its Paris day ends."""

    class Meta:
        table_name = _TableName(_quota_table)
        region = None
        host = None
        connect_timeout_seconds = 2
        read_timeout_seconds = 5

    key = UnicodeAttribute(hash_key=True, attr_name="pk")
    counter = UnicodeAttribute(range_key=True, attr_name="sk")
    used = NumberAttribute(default=0)
    limit = NumberAttribute(attr_name="quota_limit")
    exhausted = BooleanAttribute(null=True)
    expires_at = TTLAttribute()


def _sync_table() -> str:
    from aisp.settings import SyncSettings, load_settings  # noqa: PLC0415

    settings: SyncSettings = load_settings(SyncSettings)
    return settings.sync_table_name


class SyncDueIndex(GlobalSecondaryIndex["SyncRecord"]):  # type: ignore[no-untyped-call]
    """Sparse GSI: the feed heads of connections to sync, by shard and next sync time, with who and which bank
    (what a run needs to read the bank, so it reads no connection to learn it)."""

    class Meta:
        index_name = SYNC_DUE_INDEX
        projection = IncludeProjection(["user_id", "bank_code", "schedule_id"])

    sync_shard = NumberAttribute(hash_key=True)
    next_sync_at = NumberAttribute(range_key=True)


class SyncRecord(Model):
    """An item of ``SyncTable``, keyed by ``connection_id`` and ``sk``: the feed's head (``feed``: ``seq`` allocated,
    ``committed``, the writers' lease; while the connection is to be synced, ``sync_shard`` + ``next_sync_at``, its
    keys in ``SyncDueIndex``, with ``user_id``, ``bank_code`` and ``schedule_id``), a transaction
    (``tx#<account_id>#<transaction_id>``: ``blob`` sealed), up to 99 changes of one account (``chg#<last seq, 12
    digits>``, ``seq`` the first: ``blob`` sealed), an account's note (``acct#``), balances (``bal#``) or last listing
    (``list#``); ``docs/sync.md``, The store."""

    class Meta:
        table_name = _TableName(_sync_table)
        region = None
        host = None
        connect_timeout_seconds = 2
        read_timeout_seconds = 5

    connection_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    seq = NumberAttribute(null=True)
    committed = NumberAttribute(null=True)
    committed_at = UTCDateTimeAttribute(null=True)
    next_sync_at = NumberAttribute(null=True)
    sync_shard = NumberAttribute(null=True)
    user_id = UnicodeAttribute(null=True)
    bank_code = UnicodeAttribute(null=True)
    schedule_id = UnicodeAttribute(null=True)
    lease_owner = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)
    account_id = UnicodeAttribute(null=True)
    transaction_id = UnicodeAttribute(null=True)
    blob = BinaryAttribute(null=True, legacy_encoding=False)
    expires_at = TTLAttribute(null=True)
    # What stored an account's listing (``list#<account_id>``) or balances (``bal#``): ``live`` or ``sync``, and the
    # listing's first day (ISO): when and from where the store is fresh, in clear (no data of the user's).
    source = UnicodeAttribute(null=True)
    listed_from = UnicodeAttribute(null=True)
    # A transaction's window day (ISO; ``aisp.models.sync.window_day``, already in clear in its TTL), absent for a
    # pending or undated one: a later sync opens only the transactions of its window (docs/sync.md, A sync run).
    day = UnicodeAttribute(null=True)

    sync_due_index = SyncDueIndex()


def reset_connections() -> None:
    """Drop the models' cached DynamoDB connections (tests switching mocks or endpoints)."""
    for model in (ConnectionRecord, OAuthStateRecord, CompletionRecord, QuotaRecord, SyncRecord):
        model._connection = None  # noqa: SLF001 - PynamoDB caches its TableConnection here
