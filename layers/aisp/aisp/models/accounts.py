"""Normalized account-information models of the fintech-facing API (``/v1/.../accounts``, balances, transactions...).

They are made from the domain's bank models (:mod:`aisp.models.bank`, which ``aisp.stet.mapping`` makes from every
STET shape) into one stable shape: snake_case names, amounts as decimal strings (signed for transactions: debits are
negative), ISO dates, transaction status ``booked | pending | future | information | rejected | other``, remittance as
a list of lines. Nothing of the bank's free text is added beyond the data fields themselves (names, products,
remittance lines). Every field of an answer is always sent (``null`` when
the bank gave no value), and every list comes inside an object.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, computed_field

from aisp.models.bank import CreditDebit, TransactionStatus
from aisp.models.sync import SyncedTransaction
from aisp.observability import logger

if TYPE_CHECKING:
    from aisp.models.bank import (
        BankAccount,
        BankAccounts,
        BankBalance,
        BankBeneficiary,
        BankIdentity,
        BankTransaction,
    )
    from aisp.models.connection import CardReference, ConsentSnapshot

__all__ = [
    "AccountItem",
    "AccountLinksAvailable",
    "AllAccountsResponse",
    "BalanceItem",
    "BalancesResponse",
    "BankAccountItem",
    "BankErrorItem",
    "BeneficiaryItem",
    "IdentityResponse",
    "ListAccountsResponse",
    "RemovedTransactionItem",
    "SyncedTransactionItem",
    "TransactionItem",
    "TransactionsResponse",
    "TransactionsSyncPage",
    "TransactionsSyncResponse",
    "TrustedBeneficiariesResponse",
    "decimal_string",
    "synced_item",
    "synced_item_head",
    "synced_item_json",
]

DecimalString = Annotated[
    str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", description="Decimal amount as a string", examples=["-150.00"])
]


def decimal_string(amount: Decimal) -> str:
    """A plain decimal string with the bank's scale (``Decimal("-1.5E+2")`` → ``"-150"``; never an exponent)."""
    return format(abs(amount) if amount.is_zero() else amount, "f")


class _Out(BaseModel):
    # Schemas built on first use: a request builds only the models its route answers with. Every field is sent, so
    # the schema marks every one required (a field with a default too).
    model_config = ConfigDict(
        frozen=True, extra="forbid", defer_build=True, json_schema_serialization_defaults_required=True
    )


class BalanceItem(_Out):
    """One balance of an account."""

    type: str = Field(description="STET balanceType: CLBD (booked), XPCD (expected), VALU (value date), OTHR, ITAV")
    name: str | None
    amount: DecimalString
    currency: str
    reference_date: date | None

    @classmethod
    def from_bank(cls, balance: BankBalance) -> BalanceItem:
        return cls(
            type=balance.type,
            name=balance.name,
            amount=decimal_string(balance.amount),
            currency=balance.currency,
            reference_date=balance.reference_date,
        )


class AccountLinksAvailable(_Out):
    """Which per-account resources the bank offers for this account (what the current consent covers)."""

    balances: bool
    transactions: bool

    @classmethod
    def from_bank(cls, account: BankAccount, consent: ConsentSnapshot | None) -> AccountLinksAvailable:
        """The bank's links decide; only an account listed with no links at all falls back on the consent on
        record."""
        links = account.links
        if links is not None:
            return cls(balances=links.balances, transactions=links.transactions)
        if consent is None:
            return cls(balances=False, transactions=False)
        keys = {key for key in (account.iban, account.resource_id, account.masked_pan) if key}
        return cls(
            balances=not keys.isdisjoint(_consent_keys(consent.balances)),
            transactions=not keys.isdisjoint(_consent_keys(consent.transactions)),
        )


def _consent_keys(items: list[str | CardReference]) -> set[str]:
    return {item if isinstance(item, str) else item.card for item in items}


class AccountItem(_Out):
    """One account of the user at one bank."""

    account_id: str = Field(
        description="The bank's resource id: the {account_id} of the balances and transactions routes (an account "
        "the bank lists without one cannot be queried, and is left out)"
    )
    iban: str | None
    name: str | None
    product: str | None
    cash_account_type: str | None = Field(description="CACC (cash account) or CARD (deferred-debit card)")
    usage: str | None = Field(description="PRIV or ORGA")
    currency: str | None
    psu_status: str | None = Field(description="e.g. Account Holder, Co-account Holder")
    linked_account: str | None = Field(description="For a card: the cash account it is set up on")
    masked_pan: str | None = Field(
        description='For a card: its masked number, to put in a consent as {"card": masked_pan}',
        examples=["497010XXXXXX4242"],
    )
    balances: list[BalanceItem] = Field(description="Embedded when the account is consented for balances")
    links: AccountLinksAvailable

    @classmethod
    def from_bank(cls, account: BankAccount, consent: ConsentSnapshot | None = None) -> AccountItem:
        """Raises ``ValueError`` for an account without a resource id (:meth:`ListAccountsResponse.from_bank`)."""
        if not account.resource_id:
            raise ValueError("the bank listed an account without a resourceId")
        return cls(
            account_id=account.resource_id,
            iban=account.iban,
            name=account.name,
            product=account.product,
            cash_account_type=account.cash_account_type,
            usage=account.usage,
            currency=account.currency,
            psu_status=account.psu_status,
            linked_account=account.linked_account,
            masked_pan=account.masked_pan,
            balances=[BalanceItem.from_bank(balance) for balance in account.balances],
            links=AccountLinksAvailable.from_bank(account, consent),
        )


class ListAccountsResponse(_Out):
    """``GET /v1/connections/{bank_code}/accounts``."""

    bank_code: str
    accounts: list[AccountItem]
    connected_psu: str | None = Field(description="The PSU's name, when the bank gives it with the accounts")

    @classmethod
    def from_bank(
        cls, bank_code: str, accounts: BankAccounts, consent: ConsentSnapshot | None = None
    ) -> ListAccountsResponse:
        """The bank's accounts; one it lists without a resource id (optional in STET) has no {account_id} to
        query its balances or transactions by, so it is left out and counted in the logs."""
        addressable = [account for account in accounts.accounts if account.resource_id]
        if len(addressable) < len(accounts.accounts):
            logger.warning(
                "accounts without resourceId left out",
                bank_code=bank_code,
                left_out=len(accounts.accounts) - len(addressable),
            )
        return cls(
            bank_code=bank_code,
            accounts=[AccountItem.from_bank(account, consent) for account in addressable],
            connected_psu=accounts.connected_psu,
        )


class TransactionItem(_Out):
    """One transaction; ``amount`` is signed (debits negative)."""

    id: str | None = Field(description="The bank's resource id, else its entry reference")
    entry_reference: str | None
    amount: DecimalString
    currency: str
    credit_debit: CreditDebit
    status: TransactionStatus = Field(
        description="booked (BOOK), pending (PDNG: not yet booked, already in the instant balance), future (FUTR: "
        "booked with a future value date), information (INFO: never booked), rejected (RJCT), other (OTHR or unknown)"
    )
    booking_date: date | None
    value_date: date | None
    transaction_date: date | None
    remittance: list[str]

    @classmethod
    def from_bank(cls, transaction: BankTransaction) -> TransactionItem:
        return cls(**_transaction_fields(transaction))


class SyncedTransactionItem(TransactionItem):
    """A transaction of the sync feed: our stable ``transaction_id`` and its account beside the bank's fields."""

    transaction_id: str = Field(description="Ours: stable and opaque (docs/sync.md, Transaction ids)")
    account_id: str
    pending_transaction_id: str | None = Field(
        description="For a booked transaction that settles a pending one: that one's transaction_id (removed in the "
        "same or an earlier sync)"
    )

    @classmethod
    def from_synced(cls, synced: SyncedTransaction) -> SyncedTransactionItem:
        return cls(
            **_transaction_fields(synced.transaction),
            transaction_id=synced.transaction_id,
            account_id=synced.account_id,
            pending_transaction_id=synced.pending_transaction_id,
        )


def synced_item(stored: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`SyncedTransactionItem`'s JSON form made from a stored transaction's (``SyncedTransaction``'s JSON
    form, as the store wrote it from the validated model), without building either model: the same keys in the same
    order, the amount as :func:`decimal_string` gives it. ``tests/unit/test_sync_feed_body.py`` holds it to the model.
    """
    transaction = stored["transaction"]
    return {
        "id": transaction["id"],
        "entry_reference": transaction["entry_reference"],
        "amount": decimal_string(Decimal(transaction["amount"])),
        "currency": transaction["currency"],
        "credit_debit": transaction["credit_debit"],
        "status": transaction["status"],
        "booking_date": transaction["booking_date"],
        "value_date": transaction["value_date"],
        "transaction_date": transaction["transaction_date"],
        "remittance": transaction["remittance"],
        "transaction_id": stored["transaction_id"],
        "account_id": stored["account_id"],
        "pending_transaction_id": stored["pending_transaction_id"],
    }


def synced_item_head(stored: Mapping[str, Any]) -> str:
    """The JSON text of :func:`synced_item`'s bank fields, as the route serializes it, up to the ids (no closing
    brace): what a change pack keeps of an item (``docs/sync.md``, The route)."""
    item = synced_item(stored)
    for key in ("transaction_id", "account_id", "pending_transaction_id"):
        del item[key]
    return json.dumps(item, separators=(",", ":"))[:-1]


def synced_item_json(head: str, transaction_id: str, account_id: str, pending_transaction_id: str | None) -> str:
    """A :class:`SyncedTransactionItem`'s JSON text, as the route serializes it: a :func:`synced_item_head` and its
    ids, which the caller takes from where it keeps them (so an item is always the change's)."""
    return (
        f'{head},"transaction_id":{json.dumps(transaction_id)},"account_id":{json.dumps(account_id)},'
        f'"pending_transaction_id":{json.dumps(pending_transaction_id)}}}'
    )


def _transaction_fields(transaction: BankTransaction) -> dict[str, Any]:
    """A transaction item's bank fields (one validation builds the item, whichever it is)."""
    return {
        "id": transaction.id,
        "entry_reference": transaction.entry_reference,
        "amount": decimal_string(transaction.amount),
        "currency": transaction.currency,
        "credit_debit": transaction.credit_debit,
        "status": transaction.status,
        "booking_date": transaction.booking_date,
        "value_date": transaction.value_date,
        "transaction_date": transaction.transaction_date,
        "remittance": list(transaction.remittance),
    }


class RemovedTransactionItem(_Out):
    """A transaction the bank no longer lists (a pending one settled or released, a correction)."""

    transaction_id: str
    account_id: str


class TransactionsSyncResponse(_Out):
    """``GET .../transactions/sync``: what changed after the cursor, across the connection's consented accounts."""

    added: list[SyncedTransactionItem]
    modified: list[SyncedTransactionItem]
    removed: list[RemovedTransactionItem]
    next_cursor: str = Field(
        description="Opaque: pass it as ?cursor= next time (valid 400 days); store it with the data"
    )
    has_more: bool = Field(description="More changes are already waiting: call again with next_cursor at once")
    synced_at: AwareDatetime | None = Field(description="When the gateway last wrote this feed (null: never synced)")


@dataclass(frozen=True, slots=True)
class TransactionsSyncPage:
    """A :class:`TransactionsSyncResponse` as its JSON form: ``added`` and ``modified`` are each item's JSON text
    (:func:`synced_item_json`), spliced into the body as they are, no model built a transaction (the feed route's
    answer, ``docs/sync.md``, The route)."""

    added: list[str]
    modified: list[str]
    removed: list[dict[str, str]]
    next_cursor: str
    has_more: bool
    synced_at: datetime | None

    def _envelope(self) -> dict[str, Any]:
        """The fields other than the lists, rendered by the model itself (its lists empty)."""
        return TransactionsSyncResponse(
            added=[],
            modified=[],
            removed=[],
            next_cursor=self.next_cursor,
            has_more=self.has_more,
            synced_at=self.synced_at,
        ).model_dump(mode="json")

    def body(self) -> dict[str, Any]:
        """The response's JSON form, each item parsed."""
        return {
            **self._envelope(),
            "added": [json.loads(item) for item in self.added],
            "modified": [json.loads(item) for item in self.modified],
            "removed": self.removed,
        }

    def json(self) -> str:
        """The body as Powertools serializes a route's model (compact, ASCII-escaped), the items spliced in."""
        compact = (",", ":")
        envelope = json.dumps(self._envelope(), separators=compact)
        empty = '{"added":[],"modified":[],"removed":[],'
        if not envelope.startswith(empty):  # the model's first fields are the lists: a change there shows here
            raise ValueError("the sync response's fields are not in the order the page is spliced in")
        return (
            f'{{"added":[{",".join(self.added)}],"modified":[{",".join(self.modified)}],'
            f'"removed":{json.dumps(self.removed, separators=compact)},{envelope[len(empty) :]}'
        )

    def model(self) -> TransactionsSyncResponse:
        """The body validated into the response model."""
        return TransactionsSyncResponse.model_validate(self.body())


class BalancesResponse(_Out):
    """``GET .../accounts/{account_id}/balances``."""

    balances: list[BalanceItem]
    synced_at: AwareDatetime | None = Field(
        default=None,
        description="Set when these are the balances the background sync kept (read without the user at that time, "
        "no quota spent now); null when read from the bank now",
    )


class TransactionsResponse(_Out):
    """``GET .../transactions``: one or more bank pages and where to continue."""

    transactions: list[TransactionItem]
    next_cursor: str | None = Field(
        description="Opaque; pass it back as ?cursor= for the next transactions; null when has_more is false"
    )

    @computed_field(description="Whether more transactions follow (next_cursor is then set)")  # type: ignore[prop-decorator]
    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


class BeneficiaryItem(_Out):
    """One trusted beneficiary."""

    id: str | None
    name: str | None
    iban: str | None
    bic: str | None
    is_trusted: bool | None

    @classmethod
    def from_bank(cls, beneficiary: BankBeneficiary) -> BeneficiaryItem:
        return cls(
            id=beneficiary.id,
            name=beneficiary.name,
            iban=beneficiary.iban,
            bic=beneficiary.bic,
            is_trusted=beneficiary.is_trusted,
        )


class TrustedBeneficiariesResponse(_Out):
    """``GET /v1/connections/{bank_code}/trusted-beneficiaries``."""

    beneficiaries: list[BeneficiaryItem]


class IdentityResponse(_Out):
    """``GET /v1/connections/{bank_code}/identity``: the connected PSU as the bank knows them."""

    full_name: str | None
    first_name: str | None
    last_name: str | None
    name_prefix: str | None

    @classmethod
    def from_bank(cls, identity: BankIdentity) -> IdentityResponse:
        return cls(
            full_name=identity.full_name,
            first_name=identity.first_name,
            last_name=identity.last_name,
            name_prefix=identity.name_prefix,
        )


class BankAccountItem(AccountItem):
    """An account in ``GET /v1/accounts``, with the bank it is held at."""

    bank_code: str

    @classmethod
    def at_bank(cls, bank_code: str, account: AccountItem) -> BankAccountItem:
        return cls(bank_code=bank_code, **account.model_dump())


class BankErrorItem(_Out):
    """One bank that could not be read in ``GET /v1/accounts`` (the others are still listed)."""

    bank_code: str
    status: int = Field(description="The HTTP status this error has on the per-bank routes")
    code: str = Field(description="The stable error code, as in problem+json")
    title: str


class AllAccountsResponse(_Out):
    """``GET /v1/accounts``: the accounts of every ACTIVE connection; one failing bank is an ``errors`` entry."""

    accounts: list[BankAccountItem]
    errors: list[BankErrorItem]
