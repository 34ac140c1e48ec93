"""STET wire models (:mod:`aisp.stet.schemas`, 1.4.0 to 1.5) to the domain models of :mod:`aisp.models.bank`, and
the consent the other way: the only place that knows both. Statuses become names (BOOK → booked ... OTHR or anything
unknown → other), credit/debit a sign on the amount.
"""

from __future__ import annotations

from typing import Final

from aisp.errors import BankProtocolError
from aisp.models.bank import (
    AccountLinks,
    BankAccount,
    BankAccounts,
    BankBalance,
    BankBeneficiary,
    BankIdentity,
    BankTransaction,
    CreditDebit,
    IssuedTokens,
    TransactionsPage,
    TransactionStatus,
)
from aisp.models.connection import ConsentSnapshot
from aisp.stet.schemas import (
    Account,
    AccountList,
    Balance,
    Beneficiary,
    ConsentRequest,
    EndUserIdentity,
    TokenResponse,
    Transaction,
    TransactionPage,
)

__all__ = [
    "account",
    "accounts",
    "balance",
    "beneficiary",
    "consent_request",
    "identity",
    "issued_tokens",
    "masked_pan",
    "transaction",
    "transactions_page",
]

_STATUS: Final[dict[str, TransactionStatus]] = {
    "BOOK": "booked",  # accounted
    "PDNG": "pending",  # to be accounted, already in the instant balance
    "FUTR": "future",  # on the books, value applied at a future date
    "INFO": "information",  # for information only, never booked on the account
    "RJCT": "rejected",  # did not happen
}
_CREDIT_DEBIT: Final[dict[str, CreditDebit]] = {"CRDT": "credit", "DBIT": "debit"}
_CARD_SCHEMES: Final = frozenset({"CPAN", "MPAN", "TPAN"})


def issued_tokens(token: TokenResponse) -> IssuedTokens:
    """A token endpoint's answer."""
    return IssuedTokens(access_token=token.access_token, refresh_token=token.refresh_token, expires_in=token.expires_in)


def balance(wire: Balance) -> BankBalance:
    """One ``BalanceResource``."""
    return BankBalance(
        type=wire.balance_type,
        name=wire.name,
        amount=wire.balance_amount.amount,
        currency=wire.balance_amount.currency,
        reference_date=wire.reference_date,
    )


def masked_pan(wire: Account) -> str | None:
    """A card account's masked number: ``accountId.other.identification`` under a card scheme (STET CPAN...)."""
    other = wire.account_id.other if wire.account_id else None
    if other is None or other.identification is None:
        return None
    scheme = (other.scheme_name or "").upper()
    card = (wire.cash_account_type or "").upper() == "CARD"
    return other.identification if scheme in _CARD_SCHEMES or (card and not scheme) else None


def account(wire: Account) -> BankAccount:
    """One ``AccountResource``. A link that is there, even the seed's ``{"templated": false}`` without an ``href``,
    means the resource is available (its URL is built from the resource id); ``_links`` without it means not."""
    links = wire.links
    return BankAccount(
        resource_id=wire.resource_id,
        iban=wire.iban,
        name=wire.name,
        product=wire.product,
        cash_account_type=wire.cash_account_type,
        usage=wire.usage,
        currency=wire.currency or (wire.account_id.currency if wire.account_id else None),
        psu_status=wire.psu_status,
        linked_account=wire.linked_account,
        masked_pan=masked_pan(wire),
        balances=tuple(balance(item) for item in wire.balances),
        links=None
        if links is None
        else AccountLinks(balances=links.balances is not None, transactions=links.transactions is not None),
    )


def accounts(wire: AccountList) -> BankAccounts:
    """``HalAccounts`` (with STET 1.4.0's top-level ``connectedPsu``)."""
    return BankAccounts(accounts=tuple(account(item) for item in wire.accounts), connected_psu=wire.connected_psu)


def transaction(wire: Transaction, *, bank_code: str) -> BankTransaction:
    """One ``Transaction``; raises :class:`BankProtocolError` for a credit/debit indicator other than CRDT/DBIT."""
    credit_debit = _CREDIT_DEBIT.get(wire.credit_debit_indicator.strip().upper())
    if credit_debit is None:
        raise BankProtocolError(
            "bank transaction has an unknown credit/debit indicator",
            bank_code=bank_code,
            details={"operation": "get_transactions", "field": "creditDebitIndicator"},
        )
    amount = abs(wire.transaction_amount.amount)
    return BankTransaction(
        id=wire.resource_id or wire.entry_reference,
        entry_reference=wire.entry_reference,
        amount=-amount if credit_debit == "debit" else amount,
        currency=wire.transaction_amount.currency,
        credit_debit=credit_debit,
        status=_STATUS.get(wire.status.strip().upper(), "other"),
        booking_date=wire.booking_date,
        value_date=wire.value_date,
        transaction_date=wire.transaction_date,
        remittance=tuple(wire.remittance_information),
    )


def transactions_page(wire: TransactionPage, *, bank_code: str) -> TransactionsPage:
    """One page of ``HalTransactions``, its next link as the client checked it."""
    return TransactionsPage(
        transactions=tuple(transaction(item, bank_code=bank_code) for item in wire.transactions),
        next_page_url=wire.next_url,
    )


def beneficiary(wire: Beneficiary) -> BankBeneficiary:
    """One ``Beneficiary``."""
    return BankBeneficiary(
        id=wire.id,
        name=wire.creditor.name if wire.creditor else None,
        iban=wire.creditor_account.iban if wire.creditor_account else None,
        bic=wire.creditor_agent.bic_fi if wire.creditor_agent else None,
        is_trusted=wire.is_trusted,
    )


def identity(wire: EndUserIdentity) -> BankIdentity:
    """The end user's identity, from any of its STET shapes."""
    return BankIdentity(
        full_name=wire.full_name,
        first_name=wire.first_name,
        last_name=wire.last_name,
        name_prefix=wire.name_prefix,
    )


def consent_request(consent: ConsentSnapshot) -> ConsentRequest:
    """The STET ``Access`` body of a consent: IBANs as ``{"iban"}``, cards by masked number (CPAN)."""
    return ConsentRequest(
        balances=[item for item in consent.balances if isinstance(item, str)],
        transactions=[item for item in consent.transactions if isinstance(item, str)],
        card_balances=[item.card for item in consent.balances if not isinstance(item, str)],
        card_transactions=[item.card for item in consent.transactions if not isinstance(item, str)],
        psu_identity=consent.psu_identity,
        trusted_beneficiaries=consent.trusted_beneficiaries,
    )
