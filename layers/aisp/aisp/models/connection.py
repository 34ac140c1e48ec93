"""Domain models of a user's connection to one bank, of its tokens and of a pending OAuth ``state``.

Tokens never travel inside :class:`Connection`: the repositories hand them out separately, decrypted, as a
:class:`TokenPair` of ``SecretStr`` (hidden from ``repr``, logs and model dumps).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr


class ConnectionStatus(StrEnum):
    """Lifecycle of a (user, bank) connection."""

    PENDING = "PENDING"  # journey started, no token yet
    ACTIVE = "ACTIVE"  # tokens stored; refreshed by the refresher while the refresh token lives
    REAUTH_REQUIRED = "REAUTH_REQUIRED"  # the bank refused the refresh token: the user must log in again
    REVOKED = "REVOKED"  # deleted by the user: tokens forgotten, record purged later by TTL


class CardReference(BaseModel):
    """A deferred-debit card in a consent, by its masked number as the bank lists it (never a full card number)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    card: str = Field(description="The card's masked number, the masked_pan of GET .../accounts")


class ConsentSnapshot(BaseModel):
    """What the user last consented to at the bank (written by the consent submission, issue 5)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    balances: list[str | CardReference] = Field(
        default_factory=list, description="Accounts consented for balances: IBANs, and cards as {card}"
    )
    transactions: list[str | CardReference] = Field(
        default_factory=list, description="Accounts consented for transactions: IBANs, and cards as {card}"
    )
    psu_identity: bool = False
    trusted_beneficiaries: bool = False
    updated_at: AwareDatetime | None = None


class Connection(BaseModel):
    """One user's connection to one bank (establishment code), without its tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connection_id: str
    user_id: str
    bank_code: Annotated[str, Field(pattern=r"^[0-9]{5}$")]
    status: ConnectionStatus
    created_at: AwareDatetime
    updated_at: AwareDatetime
    connected_at: AwareDatetime | None = None
    access_expires_at: AwareDatetime | None = None
    refresh_issued_at: AwareDatetime | None = None
    reauth_due_at: AwareDatetime | None = None
    revoked_at: AwareDatetime | None = None
    consent: ConsentSnapshot | None = None
    has_tokens: bool = False
    version: Annotated[int, Field(ge=0)]

    def access_expired(self, now: datetime, *, margin_seconds: int = 0) -> bool:
        """Whether the access token is (or will be within ``margin_seconds``) past its expiry, or unknown."""
        if self.access_expires_at is None:
            return True
        return (self.access_expires_at - now).total_seconds() <= margin_seconds


class TokenPair(BaseModel):
    """The bank's tokens for one connection, decrypted. ``SecretStr``: never printed, logged or dumped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    access_token: SecretStr
    refresh_token: SecretStr | None = None


class OAuthState(BaseModel):
    """A pending authorization request, found again by its ``state`` (stored hashed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state_hash: str
    user_id: str
    bank_code: str
    connection_id: str
    return_url: str
    redirect_uri: str
    created_at: AwareDatetime
    expires_at: AwareDatetime
    consumed_at: AwareDatetime | None = None
