"""Request and response models of the fintech-facing HTTP API (``/v1``).

Conventions (``docs/clients.md``): every answer is an object (lists under a named key), every field of an answer is
always sent (``null`` when it has no value, never absent), enum values are lower-case snake case, errors are
:mod:`aisp.models.problem` documents.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Final

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from aisp.banks import Bank, BankCapabilities, Network
from aisp.iban import is_valid_iban, normalise_iban
from aisp.models.connection import CardReference, Connection, ConsentSnapshot, StatusReason

BankCodeField = Annotated[str, Field(pattern=r"^[0-9]{5}$", description="Establishment code (cdetab), 5 digits")]


class BankSummary(BaseModel):
    """One establishment as listed by ``GET /v1/banks``."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    bank_code: str = Field(description="Establishment code (cdetab); the key of a connection")
    name: str
    short_name: str
    network: Network
    capabilities: BankCapabilities

    @classmethod
    def from_bank(cls, bank: Bank) -> BankSummary:
        return cls(
            bank_code=bank.bank_code,
            name=bank.name,
            short_name=bank.short_name,
            network=bank.network,
            capabilities=bank.capabilities,
        )


class ListBanksResponse(BaseModel):
    """``GET /v1/banks``."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    banks: list[BankSummary]


class CreateConnectionRequest(BaseModel):
    """``POST /v1/connections``. The user is the JWT ``sub``; a user id in the body is refused (extra fields)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    bank_code: BankCodeField
    return_url: Annotated[
        str,
        Field(
            min_length=1,
            max_length=2048,
            description="Where the browser goes back after the bank (must match the configured allowlist)",
        ),
    ]


class CreateConnectionResponse(BaseModel):
    """The login link for the user's browser, valid until ``expires_at``."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    connection_id: str
    bank_code: str
    authorization_url: str
    expires_at: AwareDatetime


class ConnectionStatus(StrEnum):
    """A connection's status as the API spells it: the stored status (``aisp.models.connection``), lower case."""

    PENDING = "pending"
    AUTHORIZED = "authorized"
    ACTIVE = "active"
    REAUTH_REQUIRED = "reauth_required"
    FAILED = "failed"
    REVOKED = "revoked"


class ConnectionSummary(BaseModel):
    """One connection as listed by ``GET /v1/connections`` (never any token), as it stands now."""

    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True, defer_build=True)

    connection_id: str
    bank_code: str
    status: ConnectionStatus = Field(
        description="pending: first login not finished; authorized: the bank authorized it, the app must complete "
        "it (POST .../complete); active: usable; reauth_required: the user must log in again (Reconnect); "
        "failed: the first login ended without a connection (status_reason says why); revoked: deleted by the user"
    )
    status_reason: StatusReason | None = Field(
        default=None, description="Why a connection is failed or reauth_required (null otherwise)"
    )
    connected_at: AwareDatetime | None
    access_expires_at: AwareDatetime | None
    reauth_due_at: AwareDatetime | None
    consent: ConsentSnapshot | None

    @classmethod
    def from_connection(cls, connection: Connection) -> ConnectionSummary:
        return cls(
            connection_id=connection.connection_id,
            bank_code=connection.bank_code,
            status=ConnectionStatus(connection.status.value.lower()),
            status_reason=connection.status_reason,
            connected_at=connection.connected_at,
            access_expires_at=connection.access_expires_at,
            reauth_due_at=connection.reauth_due_at,
            consent=connection.consent,
        )


class ListConnectionsResponse(BaseModel):
    """``GET /v1/connections``: every connection of the user, whatever its status."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    connections: list[ConnectionSummary]


class CompleteConnectionRequest(BaseModel):
    """``POST /v1/connections/{bank_code}/complete``: the one-time value the callback sent the app back with."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    completion: Annotated[
        str,
        Field(
            min_length=1,
            max_length=256,
            description="The `completion` query parameter of the callback's redirect (single use, valid 5 minutes)",
        ),
    ]


MAX_CONSENTED_ACCOUNTS: Final = 100
MASKED_PAN_RE: Final = re.compile(r"^(?=[0-9]*[X*])[0-9X*]{12,19}$")


def _checked_iban(value: str) -> str:
    normalised = normalise_iban(value)
    if not is_valid_iban(normalised):
        # Never echo the value: it is personal data.
        raise ValueError("not a valid IBAN (format, country length or check digits)")
    return normalised


def _distinct[T](values: list[T]) -> list[T]:
    return list(dict.fromkeys(values))


def _checked_masked_pan(value: str) -> str:
    normalised = "".join(value.split()).upper()
    if not MASKED_PAN_RE.match(normalised):
        # Never echo the value: a full card number must not reach a log either.
        raise ValueError("not a masked card number: give it as the bank lists it (masked_pan), never a full number")
    return normalised


class CardConsent(CardReference):
    """``{"card": "497010XXXXXX4242"}``: a deferred-debit card (cashAccountType CARD) in a consent list."""

    card: Annotated[
        str,
        Field(
            min_length=12,
            max_length=30,
            description="The card's masked number as GET .../accounts lists it (masked_pan); a full number is refused",
            examples=["497010XXXXXX4242"],
        ),
        AfterValidator(_checked_masked_pan),
    ]


IbanField = Annotated[
    str,
    Field(min_length=15, max_length=42, description="IBAN; spaces allowed", examples=["FR7613807008043001965405158"]),
    AfterValidator(_checked_iban),
]
ConsentList = Annotated[
    list[IbanField | CardConsent], Field(max_length=MAX_CONSENTED_ACCOUNTS), AfterValidator(_distinct)
]


class SubmitConsentRequest(BaseModel):
    """``PUT /v1/connections/{bank_code}/consent``: what the user agrees to share; replaces the previous consent.

    Each item is an IBAN, or ``{"card": masked number}`` for a deferred-debit card (STET's ``other`` identification,
    scheme ``CPAN``). They must be accounts the user holds at this bank (``GET .../accounts`` lists them); the bank
    refuses others.
    """

    # Built on first use: only the consents function validates it (every HTTP function imports this module).
    # Errors never carry the input: an IBAN or a card number must not reach a log line.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True, hide_input_in_errors=True)

    balances: ConsentList = Field(description="Accounts whose balances may be read: IBANs, or {card} for a card")
    transactions: ConsentList = Field(
        description="Accounts whose transactions may be read: IBANs, or {card} for a card"
    )
    psu_identity: bool = Field(description="Whether the user's identity (name) may be read")
    trusted_beneficiaries: bool = Field(description="Whether the user's trusted beneficiaries may be read")


class SubmitConsentResponse(BaseModel):
    """The consent now in force at the bank, as stored on the connection."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    bank_code: str
    connection_id: str
    consent: ConsentSnapshot
