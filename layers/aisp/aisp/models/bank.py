"""What a bank gives us, in our own words: the ports of ``aisp.logic.ports`` speak these, and the bank adapter
(``aisp.stet.mapping``) makes them from its wire models. Amounts are decimals, transactions signed (debits
negative), statuses named; nothing of a particular STET version shows. Design: ``docs/architecture.md``.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = [
    "AccountLinks",
    "BankAccount",
    "BankAccounts",
    "BankBalance",
    "BankBeneficiary",
    "BankIdentity",
    "BankTransaction",
    "CreditDebit",
    "IssuedTokens",
    "TransactionStatus",
    "TransactionsPage",
]

TransactionStatus = Literal["booked", "pending", "future", "information", "rejected", "other"]
CreditDebit = Literal["credit", "debit"]


class _Domain(BaseModel):
    # Built on first use, not at import: the HTTP functions' cold start (bench/cold_start.py).
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class IssuedTokens(_Domain):
    """What a token endpoint issued; ``refresh_token`` ``None`` = keep the one we have (BPCE does not rotate)."""

    access_token: SecretStr
    refresh_token: SecretStr | None = None
    expires_in: int | None = Field(default=None, description="Seconds; None when the bank does not say")


class BankBalance(_Domain):
    """One balance of an account."""

    type: str  # STET balanceType: CLBD, XPCD, VALU, OTHR, ITAV
    name: str | None
    amount: Decimal
    currency: str
    reference_date: date | None


class AccountLinks(_Domain):
    """Which per-account resources the bank's answer links to (what the consent in force covers)."""

    balances: bool
    transactions: bool


class BankAccount(_Domain):
    """One account as the bank lists it."""

    resource_id: str | None  # the {account_id} of the per-account calls; the bank may omit it
    iban: str | None
    name: str | None
    product: str | None
    cash_account_type: str | None  # CACC or CARD
    usage: str | None  # PRIV or ORGA
    currency: str | None
    psu_status: str | None
    linked_account: str | None
    masked_pan: str | None  # a card's masked number
    balances: tuple[BankBalance, ...] = ()
    links: AccountLinks | None = None  # None: the bank's answer carried no links at all


class BankAccounts(_Domain):
    """The accounts of the connected user, and their name when the bank gives it with them (STET 1.4.0)."""

    accounts: tuple[BankAccount, ...] = ()
    connected_psu: str | None = None


class BankTransaction(_Domain):
    """One transaction; ``amount`` is signed (debits negative)."""

    id: str | None
    entry_reference: str | None
    amount: Decimal
    currency: str
    credit_debit: CreditDebit
    status: TransactionStatus
    booking_date: date | None
    value_date: date | None
    transaction_date: date | None
    remittance: tuple[str, ...] = ()


class TransactionsPage(_Domain):
    """One page of an account's transactions; ``next_page_url`` is the bank's own link (checked to be on its
    origin), or ``None`` after the last page."""

    transactions: tuple[BankTransaction, ...] = ()
    next_page_url: str | None = None


class BankBeneficiary(_Domain):
    """One trusted beneficiary."""

    id: str | None
    name: str | None
    iban: str | None
    bic: str | None
    is_trusted: bool | None


class BankIdentity(_Domain):
    """The connected user as the bank knows them."""

    full_name: str | None
    first_name: str | None = None
    last_name: str | None = None
    name_prefix: str | None = None
