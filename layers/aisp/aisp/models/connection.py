"""Domain models of a user's connection to one bank, of its tokens, of a pending OAuth ``state`` and of the
one-time completion value that activates a connection (the lifecycle is drawn in ``docs/connect.md``).

Tokens never travel inside :class:`Connection`: the repositories hand them out separately, decrypted, as a
:class:`TokenPair` of ``SecretStr`` (hidden from ``repr``, logs and model dumps).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr


class ConnectionStatus(StrEnum):
    """Lifecycle of a (user, bank) connection."""

    PENDING = "PENDING"  # first login journey started, no token yet
    AUTHORIZED = "AUTHORIZED"  # the bank issued tokens; waiting for the user who started it to complete it
    ACTIVE = "ACTIVE"  # tokens stored; refreshed by the refresher while the refresh token lives
    REAUTH_REQUIRED = "REAUTH_REQUIRED"  # the bank refused the refresh token, or the SCA period ended
    FAILED = "FAILED"  # a first login that ended without a usable connection (status_reason says why)
    REVOKED = "REVOKED"  # deleted by the user: tokens forgotten, record purged later by TTL


class StatusReason(StrEnum):
    """Why a connection is FAILED or REAUTH_REQUIRED (``status_reason``)."""

    ACCESS_DENIED = "access_denied"  # refused at the bank, or the bank could not authenticate the user
    LOGIN_EXPIRED = "login_expired"  # the bank's login was not finished while its link was valid
    BANK_UNAVAILABLE = "bank_unavailable"  # the bank was down when its code had to be exchanged
    TOKEN_EXCHANGE_FAILED = "token_exchange_failed"  # noqa: S105 - the bank gave no usable token
    COMPLETION_EXPIRED = "completion_expired"  # the app did not complete the connection in time
    COMPLETION_REJECTED = "completion_rejected"  # someone else tried to complete it: its tokens were revoked
    REAUTH_DUE = "reauth_due"  # the strong authentication's validity (reauth_due_at) ended
    ACCESS_REVOKED = "access_revoked"  # the bank refused the refresh token (revoked at the bank, or expired)
    ACCESS_EXPIRED = "access_expired"  # the bank gave no refresh token: access ended with the access token


# Statuses that keep their tokens serving (ACTIVE) or whose meaning survives an uncompleted reconnection: a login
# that is not completed brings the connection back to them; any other status ends FAILED.
RESUMABLE: frozenset[ConnectionStatus] = frozenset(
    {ConnectionStatus.ACTIVE, ConnectionStatus.REAUTH_REQUIRED, ConnectionStatus.REVOKED}
)


class PendingAuthorization(BaseModel):
    """New tokens the bank issued at a login's end, sealed on the connection until its user completes it.

    The connection's serving tokens (if any) are untouched meanwhile. Dates are those of the strong authentication
    (the callback), so completing later does not extend the refresh token's life.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    authorization_id: str
    authorized_at: AwareDatetime
    expires_at: AwareDatetime = Field(description="completion deadline; the tokens are revoked after it")
    access_expires_at: AwareDatetime
    reauth_due_at: AwareDatetime
    has_refresh_token: bool
    # Where the connection goes back to when the authorization is not completed (see RESUMABLE).
    resume_status: ConnectionStatus
    resume_reason: StatusReason | None = None

    def outcome(self, reason: StatusReason) -> tuple[ConnectionStatus, StatusReason | None]:
        """The status (and reason) the connection takes when this authorization ends uncompleted for ``reason``."""
        if self.resume_status in RESUMABLE:
            return self.resume_status, self.resume_reason
        return ConnectionStatus.FAILED, reason


class CardReference(BaseModel):
    """A deferred-debit card in a consent, by its masked number as the bank lists it (never a full card number)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    card: str = Field(description="The card's masked number, the masked_pan of GET .../accounts")


class ConsentSnapshot(BaseModel):
    """What the user last consented to at the bank (written by the consent submission, issue 5)."""

    # Answers always carry every field: the API's schema marks them all required.
    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True, defer_build=True
    )

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

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

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
    status_reason: StatusReason | None = None
    # The latest login journey's link expires then (its state's TTL): a PENDING connection is FAILED after it.
    journey_expires_at: AwareDatetime | None = None
    pending: PendingAuthorization | None = None

    def access_expired(self, now: datetime, *, margin_seconds: int = 0) -> bool:
        """Whether the access token is (or will be within ``margin_seconds``) past its expiry, or unknown."""
        if self.access_expires_at is None:
            return True
        return (self.access_expires_at - now).total_seconds() <= margin_seconds

    def reauth_due(self, now: datetime) -> bool:
        """Whether the strong authentication's validity has ended (the bank will refuse the refresh token)."""
        return self.reauth_due_at is not None and self.reauth_due_at <= now

    def as_of(self, now: datetime) -> Connection:
        """This connection as it stands at ``now``: what its stored status becomes once a deadline passes.

        A PENDING login past its link's life is FAILED (``login_expired``); an AUTHORIZED one past its completion
        deadline takes its uncompleted outcome; an ACTIVE one past ``reauth_due_at`` is REAUTH_REQUIRED. The
        refresher (and the next use) writes the same transitions and does what they need (revoke, notify).
        """
        status, reason = self.status, self.status_reason
        if status is ConnectionStatus.PENDING and self.journey_expires_at and self.journey_expires_at <= now:
            status, reason = ConnectionStatus.FAILED, StatusReason.LOGIN_EXPIRED
        elif status is ConnectionStatus.AUTHORIZED and self.pending and self.pending.expires_at <= now:
            status, reason = self.pending.outcome(StatusReason.COMPLETION_EXPIRED)
        elif status is ConnectionStatus.ACTIVE and self.reauth_due(now):
            status, reason = ConnectionStatus.REAUTH_REQUIRED, StatusReason.REAUTH_DUE
        if (status, reason) == (self.status, self.status_reason):
            return self
        return self.model_copy(update={"status": status, "status_reason": reason})


class TokenPair(BaseModel):
    """The bank's tokens for one connection, decrypted. ``SecretStr``: never printed, logged or dumped."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    access_token: SecretStr
    refresh_token: SecretStr | None = None

    def fingerprint(self) -> str:
        """A SHA-256 of the token revoking this pair names (the refresh token, else the access token)."""
        token = self.refresh_token or self.access_token
        return hashlib.sha256(token.get_secret_value().encode()).hexdigest()


class OAuthState(BaseModel):
    """A pending authorization request, found again by its ``state`` (stored hashed)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    state_hash: str
    user_id: str
    bank_code: str
    connection_id: str
    return_url: str
    redirect_uri: str
    created_at: AwareDatetime
    expires_at: AwareDatetime
    consumed_at: AwareDatetime | None = None
    # PKCE's code_verifier sealed with the state (aisp.pkce); None when the bank gets no PKCE.
    sealed_code_verifier: bytes | None = None


class CompletionOutcome(StrEnum):
    """How a completion value was used up."""

    COMPLETED = "completed"  # by its user: the connection is ACTIVE
    REJECTED = "rejected"  # another user tried it: the authorization's tokens were revoked
    EXPIRED = "expired"  # tried after its deadline: the authorization's tokens were revoked


class Completion(BaseModel):
    """The one-time value the callback hands the app (stored hashed): it activates one authorization, for the user
    who started the login, before ``valid_until``."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    completion_hash: str
    user_id: str
    bank_code: str
    connection_id: str
    authorization_id: str
    created_at: AwareDatetime
    valid_until: AwareDatetime
    consumed_at: AwareDatetime | None = None
    outcome: CompletionOutcome | None = None
