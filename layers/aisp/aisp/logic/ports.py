"""The small interfaces the connection use cases depend on (STYLE §2). Adapters: ``aisp.dal``, ``aisp.stet.gateway``;
fakes: ``tests/unit/fakes.py``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from aisp.models.connection import Connection, OAuthState, TokenPair

if TYPE_CHECKING:  # the STET package (requests, signing) loads only when a bank is called
    from aisp.stet.schemas import TokenResponse

__all__ = ["BankGateway", "Clock", "ConnectionRepository", "OAuthStateRepository", "SystemClock"]


class Clock(Protocol):
    """Where "now" comes from (a fake one in tests moves forward on demand)."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    """The real clock, to the second (stored timestamps and API answers carry no microseconds)."""

    def now(self) -> datetime:
        """``datetime.now(UTC)`` without microseconds."""
        return datetime.now(UTC).replace(microsecond=0)


class ConnectionRepository(Protocol):
    """Connections; every write is conditional on the version read (see :mod:`aisp.dal.connections`)."""

    def find(self, user_id: str, bank_code: str) -> Connection | None:
        """The user's connection to the bank, or ``None``."""
        ...

    def get_with_tokens(self, user_id: str, bank_code: str) -> tuple[Connection, TokenPair | None]:
        """The connection and its decrypted tokens; raises ``ConnectionNotFoundError``."""
        ...

    def list_for_user(self, user_id: str) -> list[Connection]:
        """Every connection of the user."""
        ...

    def create_pending(self, *, user_id: str, bank_code: str, connection_id: str, now: datetime) -> Connection:
        """Create a PENDING connection; raises ``ConflictError`` if one exists."""
        ...

    def reopen(self, connection: Connection, *, now: datetime) -> Connection:
        """REVOKED → PENDING (conditional on the version)."""
        ...

    def activate(
        self,
        *,
        user_id: str,
        bank_code: str,
        connection_id: str,
        expected_version: int | None,
        tokens: TokenPair,
        access_expires_at: datetime,
        reauth_due_at: datetime,
        now: datetime,
    ) -> Connection:
        """Store fresh tokens and make the connection ACTIVE (conditional on the version, or on absence)."""
        ...

    def store_refreshed_tokens(
        self, connection: Connection, *, tokens: TokenPair, access_expires_at: datetime, now: datetime
    ) -> Connection:
        """Replace the tokens after a refresh (conditional on the version and on ACTIVE)."""
        ...

    def mark_reauth_required(self, connection: Connection, *, now: datetime) -> Connection:
        """REAUTH_REQUIRED, out of the refresh index, tokens forgotten (conditional on the version)."""
        ...

    def revoke(self, connection: Connection, *, now: datetime, purge_at: datetime) -> Connection:
        """REVOKED, tokens forgotten, purged at ``purge_at`` (conditional on the version)."""
        ...


class OAuthStateRepository(Protocol):
    """Pending authorization requests, single use."""

    def create(
        self,
        *,
        state: str,
        user_id: str,
        bank_code: str,
        connection_id: str,
        return_url: str,
        redirect_uri: str,
        now: datetime,
        expires_at: datetime,
    ) -> OAuthState:
        """Store a state (hashed)."""
        ...

    def consume(self, state: str, *, now: datetime) -> OAuthState:
        """Use a state once; raises ``OAuthStateRejectedError`` (unknown, used, expired)."""
        ...


class BankGateway(Protocol):
    """The banks' OAuth endpoints, by bank code."""

    def authorization_url(self, bank_code: str, *, redirect_uri: str, state: str) -> str:
        """The bank's login screen URL for this request."""
        ...

    def exchange_code(self, bank_code: str, *, code: str, redirect_uri: str) -> TokenResponse:
        """Exchange an authorization code; raises ``UpstreamError`` subclasses."""
        ...

    def refresh(self, bank_code: str, *, refresh_token: str) -> TokenResponse:
        """Refresh the access token; raises ``ReauthRequiredError`` when the refresh token is refused."""
        ...

    def revoke(self, bank_code: str, *, token: str, token_type_hint: str | None = None) -> None:
        """Revoke a token at the bank."""
        ...
