"""STET (1.4.0 / 1.4.2 / 1.5) wire models for the AISP endpoints, tolerant of what BPCE actually sends.

Rules applied everywhere (see NOTES §3-§5):

* extra fields are ignored; camelCase aliases are read, Python names are accepted too;
* amounts are :class:`~decimal.Decimal` from a string (BPCE) or a number (STET 1.5);
* code lists (``cashAccountType``, ``balanceType``, ``status``, ``creditDebitIndicator``...) are plain strings, so
  unknown values survive; the ``StrEnum`` classes below only name the known ones for comparisons;
* dates accept ``2019-09-04``, ``2022-08-25T00:00:00+0200``, ``...Z`` and keep the calendar date as written;
  an unreadable optional date becomes ``None`` rather than failing the page;
* ``remittanceInformation`` may be a string, a list of strings or ``{unstructured, structured}``;
* an empty body (204) parses to an empty list; a body that does not fit raises
  :class:`~aisp.errors.BankProtocolError` naming the failing fields, never their values.

Tokens are :class:`~pydantic.SecretStr`; validation errors never echo inputs (``hide_input_in_errors``).
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

from aisp.errors import BankProtocolError

__all__ = [
    "Account",
    "AccountIdentification",
    "AccountList",
    "AmountType",
    "Balance",
    "BalanceList",
    "BalanceType",
    "Beneficiary",
    "BeneficiaryList",
    "CashAccountType",
    "ConsentRequest",
    "CreditDebitIndicator",
    "EndUserIdentity",
    "GenericIdentification",
    "Link",
    "Links",
    "StetErrorBody",
    "StetModel",
    "TokenResponse",
    "Transaction",
    "TransactionPage",
    "TransactionStatus",
    "decode_json",
    "parse_stet",
    "stet_version_at_least",
]

# The STET release BPCE's live establishments serve (/stet/psd2/v1.4.2); the registry names each bank's own.
DEFAULT_STET_VERSION: Final = "1.4.2.17"
_MAX_REPORTED_FIELDS: Final = 10
_IBAN_RE: Final = re.compile(r"^[A-Z]{2}[0-9]{2}[a-zA-Z0-9]{1,30}$")
# A masked card number (PAN): digits and at least one mask character; a clear full number never goes to a bank.
_MASKED_PAN_RE: Final = re.compile(r"^(?=[0-9]*[X*])[0-9X*]{12,19}$")
_DATE_PREFIX_RE: Final = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:$|[T ])")
_TZ_NO_COLON_RE: Final = re.compile(r"([+-]\d{2})(\d{2})$")


def stet_version_at_least(version: str, *minimum: int) -> bool:
    """Whether a STET release string (``1.4.0.47``, ``1.5.0``) is at least ``minimum`` (``1, 5``)."""
    parts = tuple(int(part) for part in re.findall(r"[0-9]+", version)[: len(minimum)])
    return parts >= minimum


# ----------------------------------------------------------------------------------------------------------------
# Known code values (fields stay ``str`` so unknown values are kept)
# ----------------------------------------------------------------------------------------------------------------


class CashAccountType(StrEnum):
    """STET ``cashAccountType``."""

    CACC = "CACC"
    CARD = "CARD"


class BalanceType(StrEnum):
    """STET ``balanceType`` (``ITAV`` is sent by newer ASPSPs)."""

    CLBD = "CLBD"
    XPCD = "XPCD"
    VALU = "VALU"
    OTHR = "OTHR"
    ITAV = "ITAV"


class TransactionStatus(StrEnum):
    """STET transaction ``status`` (1.5 list)."""

    BOOK = "BOOK"
    PDNG = "PDNG"
    FUTR = "FUTR"
    INFO = "INFO"
    OTHR = "OTHR"
    RJCT = "RJCT"


class CreditDebitIndicator(StrEnum):
    """STET ``creditDebitIndicator`` (amounts are unsigned)."""

    CRDT = "CRDT"
    DBIT = "DBIT"


# ----------------------------------------------------------------------------------------------------------------
# Lenient scalar types
# ----------------------------------------------------------------------------------------------------------------


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("amount must be a number or a numeric string")  # noqa: TRY004 - pydantic wants ValueError
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | float):
        result = Decimal(str(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("amount is not a decimal number") from None
    else:
        raise ValueError("amount must be a number or a numeric string")
    if not result.is_finite():
        raise ValueError("amount is not finite")
    return result


def _to_date(value: Any) -> date | None:
    """Keep the calendar date as written: ``2022-08-25T00:00:00+0200`` → 2022-08-25 (no UTC shift)."""
    if value is None or isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    if not isinstance(value, str):
        return None
    match = _DATE_PREFIX_RE.match(value.strip())
    if match is None:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def _to_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    text = _TZ_NO_COLON_RE.sub(r"\1:\2", value.strip().replace(" ", "T", 1))
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _to_remittance(value: Any) -> list[str]:
    """Remittance lines from any STET shape; an item we cannot read is skipped (an optional detail never fails
    the page): 1.4.0 ``["line"]``, 1.4.2/1.5 ``{"unstructured": [...], "structured": [...]}``, or a bare string."""
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return _remittance_lines(value)
    if isinstance(value, dict):
        return _remittance_lines(value.get("unstructured")) + _remittance_lines(value.get("structured"))
    return []


def _structured_reference(item: dict[str, Any]) -> str | None:
    """The creditor reference of a structured remittance item: STET 1.5 ``creditorReferenceInformation.reference``
    (``referredDocumentInformation`` numbers as a fallback), or a bare top-level ``reference`` some banks send."""
    creditor = item.get("creditorReferenceInformation")
    if isinstance(creditor, dict) and isinstance(creditor.get("reference"), str):
        return str(creditor["reference"])
    if isinstance(item.get("reference"), str):
        return str(item["reference"])
    documents = item.get("referredDocumentInformation")
    numbers = (
        [d["number"] for d in documents if isinstance(d, dict) and isinstance(d.get("number"), str)]
        if (isinstance(documents, list))
        else []
    )
    return " ".join(numbers) if numbers else None


def _remittance_lines(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    lines: list[str] = []
    for item in items:
        line = item if isinstance(item, str) else _structured_reference(item) if isinstance(item, dict) else None
        if line is not None and line.strip():
            lines.append(line)
    return lines


def _to_link(value: Any) -> Any:
    """A link may come as ``{"href": ...}``, a bare string, ``{}`` or junk; junk becomes ``None``."""
    if isinstance(value, str):
        return {"href": value}
    if isinstance(value, dict):
        return value
    return None


def _to_optional_text(value: Any) -> str | None:
    """An optional text field: a string as is, an integer as its digits (some banks number their ids), else absent."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _to_optional_object(value: Any) -> Any:
    """An optional nested object that is not an object (a string, a list, ``null``) is absent."""
    return value if isinstance(value, dict | BaseModel) else None


def _tolerant_items(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """An optional list: absent or not a list → empty; an item that does not fit is dropped, not the page."""
    if not isinstance(value, list):
        return []
    try:
        return handler(value)
    except ValidationError:
        kept: list[Any] = []
        for item in value:
            try:
                kept.extend(handler([item]))
            except ValidationError:
                continue
        return kept


Amount = Annotated[Decimal, BeforeValidator(_to_decimal)]
OptText = Annotated[str | None, BeforeValidator(_to_optional_text)]
OptBool = Annotated[bool | None, BeforeValidator(lambda v: v if isinstance(v, bool) else None)]
LenientDate = Annotated[date | None, BeforeValidator(_to_date)]
LenientDateTime = Annotated[datetime | None, BeforeValidator(_to_datetime)]
Remittance = Annotated[list[str], BeforeValidator(_to_remittance)]


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


class StetModel(BaseModel):
    """Base of every wire model: tolerant, immutable, never echoing input values in errors."""

    model_config = ConfigDict(
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        frozen=True,
        hide_input_in_errors=True,
    )


class Link(StetModel):
    """HAL ``GenericLink``. The seed's consented accounts carry ``{"templated": false}`` with no ``href``: the link
    is still there (the resource is available), the client builds the URL from the resource id."""

    href: Annotated[str | None, BeforeValidator(lambda v: v if isinstance(v, str) else None)] = None
    templated: OptBool = None


OptLink = Annotated[Link | None, BeforeValidator(_to_link)]


class Links(StetModel):
    """Union of the STET ``_links`` objects we use. ``prev`` also reads BPCE's ``previous``."""

    self_link: OptLink = Field(default=None, validation_alias=AliasChoices("self", "self_link"))
    first: OptLink = None
    last: OptLink = None
    next: OptLink = None
    prev: OptLink = Field(default=None, validation_alias=AliasChoices("prev", "previous"))
    parent_list: OptLink = Field(default=None, validation_alias=AliasChoices("parent-list", "parent_list"))
    balances: OptLink = None
    transactions: OptLink = None
    end_user_identity: OptLink = Field(
        default=None, validation_alias=AliasChoices("endUserIdentity", "end-user-identity", "end_user_identity")
    )
    beneficiaries: OptLink = Field(
        default=None, validation_alias=AliasChoices("beneficiaries", "trustedBeneficiaries", "trusted-beneficiaries")
    )


OptLinks = Annotated[Links | None, BeforeValidator(lambda v: v if isinstance(v, dict | Links) else None)]


class GenericIdentification(StetModel):
    """STET ``GenericIdentification`` (e.g. a card PAN with ``schemeName`` CPAN)."""

    identification: OptText = None
    scheme_name: OptText = Field(default=None, alias="schemeName")
    issuer: OptText = None


OptIdentification = Annotated[GenericIdentification | None, BeforeValidator(_to_optional_object)]


class AccountIdentification(StetModel):
    """STET ``AccountIdentification``: an IBAN or another identification."""

    iban: OptText = None
    other: OptIdentification = None
    currency: OptText = None


OptAccountIdentification = Annotated[AccountIdentification | None, BeforeValidator(_to_optional_object)]


class AmountType(StetModel):
    """STET ``AmountType``; ``amount`` from a string or a number."""

    amount: Amount
    currency: str


class Balance(StetModel):
    """STET ``BalanceResource``."""

    name: OptText = None
    balance_amount: AmountType = Field(alias="balanceAmount")
    balance_type: str = Field(alias="balanceType")
    last_change_date_time: LenientDateTime = Field(default=None, alias="lastChangeDateTime")
    reference_date: LenientDate = Field(default=None, alias="referenceDate")
    last_committed_transaction: OptText = Field(default=None, alias="lastCommittedTransaction")


class Account(StetModel):
    """STET ``AccountResource`` (1.4.0 account-level ``currency`` kept).

    Every member is optional, so an account never fails the list: a field of the wrong type is absent, and an
    embedded balance that does not fit is dropped (GET .../balances still gives them all, or fails loudly).
    """

    resource_id: OptText = Field(default=None, alias="resourceId")
    bic_fi: OptText = Field(default=None, alias="bicFi")
    account_id: OptAccountIdentification = Field(default=None, alias="accountId")
    name: OptText = None
    details: OptText = None
    linked_account: OptText = Field(default=None, alias="linkedAccount")
    usage: OptText = None
    cash_account_type: OptText = Field(default=None, alias="cashAccountType")
    product: OptText = None
    currency: OptText = None
    balances: Annotated[list[Balance], WrapValidator(_tolerant_items)] = Field(default_factory=list)
    psu_status: OptText = Field(default=None, alias="psuStatus")
    links: OptLinks = Field(default=None, alias="_links")

    @property
    def iban(self) -> str | None:
        """The account IBAN, if the bank gave one."""
        return self.account_id.iban if self.account_id else None


class EndUserIdentity(StetModel):
    """The connected PSU's identity, from any STET shape.

    Accepted: 1.4.2 ``{connectedPsu, connectedPsuFirstName, connectedPsuLastName, connectedPsuNamePrefix}``,
    1.5 ``{identity: {fullName, firstName, lastName, namePrefix}}`` and the flat field names.
    """

    full_name: OptText = Field(default=None, alias="fullName")
    first_name: OptText = Field(default=None, alias="firstName")
    last_name: OptText = Field(default=None, alias="lastName")
    name_prefix: OptText = Field(default=None, alias="namePrefix")

    @model_validator(mode="before")
    @classmethod
    def _unwrap_shapes(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        identity = data.get("identity")
        if isinstance(identity, dict):
            return identity
        if identity is not None:
            raise ValueError("identity must be an object")
        legacy = {
            "fullName": data.get("connectedPsu"),
            "firstName": data.get("connectedPsuFirstName"),
            "lastName": data.get("connectedPsuLastName"),
            "namePrefix": data.get("connectedPsuNamePrefix"),
        }
        if any(v is not None for v in legacy.values()):
            return legacy
        return data


class AccountList(StetModel):
    """``HalAccounts``; ``connected_psu`` is the 1.4.0 top-level ``connectedPsu``."""

    accounts: list[Account] = Field(default_factory=list)
    links: OptLinks = Field(default=None, alias="_links")
    connected_psu: OptText = Field(default=None, alias="connectedPsu")

    @field_validator("accounts", mode="before")
    @classmethod
    def _null_accounts(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def end_user_identity(self) -> EndUserIdentity | None:
        """The 1.4.0 identity carried by GET /accounts, if any."""
        return EndUserIdentity(full_name=self.connected_psu) if self.connected_psu else None


class BalanceList(StetModel):
    """``HalBalances``."""

    balances: list[Balance] = Field(default_factory=list)
    links: OptLinks = Field(default=None, alias="_links")

    @field_validator("balances", mode="before")
    @classmethod
    def _null_balances(cls, value: Any) -> Any:
        return [] if value is None else value


class Transaction(StetModel):
    """STET ``Transaction`` (1.4.0 → 1.5). Amount, currency, credit/debit and status are required (a transaction
    without them fails the page); every other member is an optional detail that is absent when unreadable."""

    resource_id: OptText = Field(default=None, alias="resourceId")
    entry_reference: OptText = Field(default=None, alias="entryReference")
    transaction_amount: AmountType = Field(alias="transactionAmount")
    credit_debit_indicator: str = Field(alias="creditDebitIndicator")
    status: str
    booking_date: LenientDate = Field(default=None, alias="bookingDate")
    value_date: LenientDate = Field(default=None, alias="valueDate")
    transaction_date: LenientDate = Field(default=None, alias="transactionDate")
    expected_booking_date: LenientDate = Field(default=None, alias="expectedBookingDate")
    remittance_information: Remittance = Field(default_factory=list, alias="remittanceInformation")
    additional_transaction_information: OptText = Field(default=None, alias="additionalTransactionInformation")
    end_to_end_id: OptText = Field(default=None, alias="endToEndId")

    @property
    def signed_amount(self) -> Decimal:
        """The amount with a sign: negative for ``DBIT``."""
        amount = self.transaction_amount.amount
        return -amount if self.credit_debit_indicator == CreditDebitIndicator.DBIT else amount


class TransactionPage(StetModel):
    """One page of ``HalTransactions``; ``next_url`` is set by the client (absolute, checked) or ``None``."""

    transactions: list[Transaction] = Field(default_factory=list)
    links: OptLinks = Field(default=None, alias="_links")
    next_url: str | None = None

    @field_validator("transactions", mode="before")
    @classmethod
    def _null_transactions(cls, value: Any) -> Any:
        return [] if value is None else value


class PartyIdentification(StetModel):
    """STET ``PartyIdentification`` (name only is used)."""

    name: OptText = None


class FinancialInstitutionIdentification(StetModel):
    """STET ``FinancialInstitutionIdentification``."""

    bic_fi: OptText = Field(default=None, alias="bicFi")
    name: OptText = None


class Beneficiary(StetModel):
    """STET ``Beneficiary`` (every member optional: a beneficiary never fails the list)."""

    id: OptText = None
    is_trusted: OptBool = Field(default=None, alias="isTrusted")
    creditor: Annotated[PartyIdentification | None, BeforeValidator(_to_optional_object)] = None
    creditor_account: OptAccountIdentification = Field(default=None, alias="creditorAccount")
    creditor_agent: Annotated[FinancialInstitutionIdentification | None, BeforeValidator(_to_optional_object)] = Field(
        default=None, alias="creditorAgent"
    )


class BeneficiaryList(StetModel):
    """``HalBeneficiaries``."""

    beneficiaries: list[Beneficiary] = Field(default_factory=list)
    links: OptLinks = Field(default=None, alias="_links")

    @field_validator("beneficiaries", mode="before")
    @classmethod
    def _null_beneficiaries(cls, value: Any) -> Any:
        return [] if value is None else value


class TokenResponse(StetModel):
    """OAuth2 token response. Tokens are secrets: hidden from ``repr``/``str`` and model dumps.

    A refresh may omit ``refresh_token`` (keep the old one) or return the same one (BPCE does not rotate).
    """

    access_token: SecretStr
    token_type: str = "Bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int | None = None
    refresh_token: SecretStr | None = None
    scope: str | None = None

    @field_validator("access_token")
    @classmethod
    def _non_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("access_token is empty")
        return value

    @field_validator("refresh_token", mode="before")
    @classmethod
    def _blank_refresh_is_absent(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("expires_in", mode="before")
    @classmethod
    def _lenient_expiry(cls, value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


class StetErrorBody(StetModel):
    """STET ``ErrorModel`` / RFC 6749 error body, parsed leniently (timestamp kept as text)."""

    status: int | None = None
    error: str | None = None
    message: str | None = None
    path: str | None = None
    timestamp: str | None = None
    error_description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return {}
        known = ("error", "message", "path", "timestamp", "error_description")
        clean: dict[str, Any] = {k: data[k] for k in known if isinstance(data.get(k), str)}
        status = data.get("status")
        if isinstance(status, int) and not isinstance(status, bool):
            clean["status"] = status
        elif isinstance(status, str) and status.strip().isdigit():
            clean["status"] = int(status.strip())
        return clean


class ConsentRequest(StetModel):
    """What the PSU agreed to share, serialised to the STET ``Access`` body for PUT /consents.

    IBANs are normalised (spaces removed, upper-case) and checked against the STET pattern.
    """

    balances: list[str] = Field(default_factory=list)
    transactions: list[str] = Field(default_factory=list)
    # Deferred-debit cards by masked number: STET's {"other": {"identification", "schemeName": "CPAN"}}.
    card_balances: list[str] = Field(default_factory=list)
    card_transactions: list[str] = Field(default_factory=list)
    trusted_beneficiaries: bool = False
    psu_identity: bool = False

    @field_validator("balances", "transactions")
    @classmethod
    def _check_ibans(cls, value: list[str]) -> list[str]:
        normalised = [iban.replace(" ", "").upper() for iban in value]
        if any(not _IBAN_RE.match(iban) for iban in normalised):
            raise ValueError("not an IBAN")
        return list(dict.fromkeys(normalised))

    @field_validator("card_balances", "card_transactions")
    @classmethod
    def _check_cards(cls, value: list[str]) -> list[str]:
        if any(not _MASKED_PAN_RE.match(card) for card in value):
            raise ValueError("not a masked card number")
        return list(dict.fromkeys(value))

    def to_stet(self, stet_version: str = DEFAULT_STET_VERSION) -> dict[str, Any]:
        """The STET ``Access`` object of ``stet_version``: 1.5 requires ``owners`` (CR378, the account owners'
        identities), which the gateway never asks for, so it is sent empty."""
        access: dict[str, Any] = {
            "balances": _identifications(self.balances, self.card_balances),
            "transactions": _identifications(self.transactions, self.card_transactions),
            "trustedBeneficiaries": self.trusted_beneficiaries,
            "psuIdentity": self.psu_identity,
        }
        if stet_version_at_least(stet_version, 1, 5):
            access["owners"] = []
        return access

    def to_json_bytes(self, stet_version: str = DEFAULT_STET_VERSION) -> bytes:
        """Compact UTF-8 JSON of :meth:`to_stet` (the exact bytes that are digested and sent)."""
        return json.dumps(self.to_stet(stet_version), separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def __repr__(self) -> str:
        # IBANs are personal data: show counts only.
        return (
            f"ConsentRequest(balances=<{len(self.balances)} ibans, {len(self.card_balances)} cards>, "
            f"transactions=<{len(self.transactions)} ibans, {len(self.card_transactions)} cards>, "
            f"trusted_beneficiaries={self.trusted_beneficiaries}, psu_identity={self.psu_identity})"
        )


def _identifications(ibans: list[str], cards: list[str]) -> list[dict[str, Any]]:
    """STET ``AccountIdentification`` items: ``{"iban"}``, then cards as ``{"other": {... "schemeName": "CPAN"}}``."""
    return [{"iban": iban} for iban in ibans] + [
        {"other": {"identification": card, "schemeName": "CPAN"}} for card in cards
    ]


# ----------------------------------------------------------------------------------------------------------------
# Parsing helpers
# ----------------------------------------------------------------------------------------------------------------


def decode_json(
    content: bytes | str | None,
    *,
    where: str,
    bank_code: str | None = None,
    request_id: str | None = None,
    status: int | None = None,
) -> Any:
    """Decode a bank body; empty or whitespace → ``None``.

    Raises
    ------
    BankProtocolError
        The body is not JSON (HTML error page, truncated...). The body is never included.
    """
    if content is None:
        return None
    text = content.decode("utf-8", errors="replace") if isinstance(content, bytes) else content
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise BankProtocolError(
            "bank response is not valid JSON",
            status=status,
            bank_code=bank_code,
            request_id=request_id,
            details={"where": where},
        ) from None  # the JSONDecodeError holds the whole raw body in ``.doc``


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<body>"


def parse_stet[ModelT: StetModel](
    model: type[ModelT],
    payload: Any,
    *,
    where: str,
    bank_code: str | None = None,
    request_id: str | None = None,
    status: int | None = None,
) -> ModelT:
    """Validate a decoded bank payload into ``model``; ``None`` (empty body) gives the model's empty value.

    Raises
    ------
    BankProtocolError
        The payload does not fit; ``details`` holds ``where`` and the failing field paths (no values).
    """
    if payload is None:
        payload = {}
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        fields = sorted({_loc_to_path(err["loc"]) for err in errors})
        raise BankProtocolError(
            "bank response does not match the expected schema",
            status=status,
            bank_code=bank_code,
            request_id=request_id,
            details={"where": where, "model": model.__name__, "fields": fields[:_MAX_REPORTED_FIELDS]},
        ) from exc
