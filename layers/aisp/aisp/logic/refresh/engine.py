"""The one refresh engine: lease → refresh at the bank → store → reauth (design: ``docs/refresh.md``).

Its callers hold the connection's refresh lease when they call :meth:`RefreshEngine.refresh`: a request whose token
is about to expire (:mod:`.on_demand`) and the scheduled refresher (:mod:`.scheduler`). The engine decides what a
bank answer means for the stored record; the callers decide only what to tell their own caller, and, when the bank
failed without refusing the grant, what to do with the lease they still hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from aisp import audit
from aisp.errors import AispError, ConflictError, ReauthRequiredError
from aisp.models.connection import Connection, ConnectionStatus, StatusReason, TokenPair
from aisp.models.refresh import ConnectionKey
from aisp.observability import logger

if TYPE_CHECKING:
    from aisp.clock import Clock
    from aisp.logic.ports import BankGateway, ConnectionRepository
    from aisp.models.bank import IssuedTokens

__all__ = ["DEFAULT_ACCESS_TOKEN_SECONDS", "Refresh", "RefreshEngine", "RefreshOutcome", "access_expiry"]

# How long an access token lives when the bank does not say (``expires_in`` absent).
DEFAULT_ACCESS_TOKEN_SECONDS: Final = 3600


class RefreshOutcome(StrEnum):
    """What one refresh did to the stored record, and who holds the lease afterwards."""

    REFRESHED = "refreshed"  # fresh tokens stored; that write released the lease
    CHANGED = "changed"  # another writer changed the record meanwhile: nothing stored, lease released
    REAUTH_REQUIRED = "reauth_required"  # no refresh token, or the bank refused it: marked, tokens forgotten
    FAILED = "failed"  # the call failed otherwise (bank, signing): tokens intact, the caller holds the lease


@dataclass(frozen=True, slots=True)
class Refresh:
    """The result of :meth:`RefreshEngine.refresh`.

    ``connection``: as stored (REFRESHED) or as marked (REAUTH_REQUIRED; ``None`` when a concurrent write won the
    marking). ``tokens``: the fresh pair (REFRESHED). ``error``: the bank's answer (FAILED; REAUTH_REQUIRED
    when the bank refused the grant rather than the record having no refresh token).
    """

    outcome: RefreshOutcome
    connection: Connection | None = None
    tokens: TokenPair | None = None
    error: AispError | None = None


def access_expiry(issued: IssuedTokens, now: datetime) -> datetime:
    """When an access token issued ``now`` expires (``expires_in``, or one hour when the bank does not say)."""
    expires_in = issued.expires_in if issued.expires_in is not None else DEFAULT_ACCESS_TOKEN_SECONDS
    return now + timedelta(seconds=max(0, expires_in))


class RefreshEngine:
    """Refreshes leased connections against one repository, bank gateway and clock."""

    def __init__(self, connections: ConnectionRepository, bank: BankGateway, clock: Clock) -> None:
        self._connections = connections
        self._bank = bank
        self._clock = clock

    def refresh(self, connection: Connection, tokens: TokenPair | None, *, owner: str) -> Refresh:
        """Refresh ``connection`` (whose lease ``owner`` holds) at the bank and store the new tokens.

        Raises only what is neither the bank's answer nor a lost race: the store failing (DynamoDB, KMS) or a bug,
        after giving the lease back; the stored refresh token is then intact.
        """
        key = ConnectionKey(connection.user_id, connection.bank_code)
        if tokens is None or tokens.refresh_token is None:
            marked = self.mark_reauth(connection, reason=StatusReason.ACCESS_EXPIRED)
            return Refresh(RefreshOutcome.REAUTH_REQUIRED, connection=marked)
        try:
            with audit.calling(
                "refresh",
                user_id=connection.user_id,
                bank_code=connection.bank_code,
                connection_id=connection.connection_id,
            ):
                issued = self._bank.refresh(connection.bank_code, refresh_token=tokens.refresh_token.get_secret_value())
        except ReauthRequiredError as refused:
            marked = self.mark_reauth(connection, reason=StatusReason.ACCESS_REVOKED)  # that write frees the lease
            return Refresh(RefreshOutcome.REAUTH_REQUIRED, connection=marked, error=refused)
        except AispError as failed:
            return Refresh(RefreshOutcome.FAILED, error=failed)
        except Exception:
            self.release(key, owner)
            raise
        # BPCE answers the same refresh token, or none: keep the one we have.
        fresh = TokenPair(access_token=issued.access_token, refresh_token=issued.refresh_token or tokens.refresh_token)
        now = self._clock.now()
        try:
            stored = self._store(connection, fresh, access_expires_at=access_expiry(issued, now), now=now, owner=owner)
        except Exception:
            # Not written: the stored refresh token still works, so free the lease for the next caller rather than
            # making every request wait for it to expire.
            self.release(key, owner)
            raise
        if stored is None:
            return Refresh(RefreshOutcome.CHANGED)
        return Refresh(RefreshOutcome.REFRESHED, connection=stored, tokens=fresh)

    def mark_reauth(self, connection: Connection, *, reason: StatusReason) -> Connection | None:
        """REAUTH_REQUIRED for ``reason``, its event left for the refresher to publish; ``None`` when the record
        changed first (someone else decided its fate)."""
        try:
            marked = self._connections.mark_reauth_required(
                connection, now=self._clock.now(), notify=True, reason=reason
            )
        except ConflictError:
            logger.info("connection changed before it could be marked reauth_required")
            return None
        audit.lifecycle(marked, "reauth_required", outcome=reason.value)
        logger.info(
            "connection needs a new strong authentication",
            connection_id=connection.connection_id,
            bank_code=connection.bank_code,
            reason=reason.value,
        )
        return marked

    def release(self, key: ConnectionKey, owner: str) -> None:
        """Give the lease back; if that fails, it expires on its own."""
        try:
            self._connections.release_lease(key, owner=owner)
        except AispError:
            logger.warning("refresh lease not released; it expires on its own", bank_code=key.bank_code)

    def _store(
        self, connection: Connection, tokens: TokenPair, *, access_expires_at: datetime, now: datetime, owner: str
    ) -> Connection | None:
        """Store the fresh tokens while holding the lease; ``None`` (lease released) when another writer won.

        The write is conditional on the version read and on the lease. If only the version moved (a consent write,
        which does not touch tokens) and the lease is still ours, it is retried once on the new version: the bank
        has already revoked the previous access token, so the new one must not be dropped for an unrelated change.
        """
        repository = self._connections
        try:
            return repository.store_refreshed_tokens(
                connection, tokens=tokens, access_expires_at=access_expires_at, now=now, lease_owner=owner
            )
        except ConflictError:
            current = repository.find(connection.user_id, connection.bank_code)
        key = ConnectionKey(connection.user_id, connection.bank_code)
        if current is None or current.status is not ConnectionStatus.ACTIVE or current.version == connection.version:
            repository.release_lease(key, owner=owner)
            return None
        try:
            return repository.store_refreshed_tokens(
                current, tokens=tokens, access_expires_at=access_expires_at, now=now, lease_owner=owner
            )
        except ConflictError:
            repository.release_lease(key, owner=owner)
            return None
