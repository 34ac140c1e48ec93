"""Normalization of the bank's STET shapes (1.4.0 as the seed's 13807 serves it, 1.4.2 as BPCE serves it) into the
API's models: decimal strings, signed amounts, booked|pending|other, remittance lines, links available."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from aisp.errors import BankProtocolError
from aisp.models.accounts import (
    AccountItem,
    BalanceItem,
    BeneficiaryItem,
    IdentityResponse,
    ListAccountsResponse,
    TransactionItem,
    decimal_string,
)
from aisp.models.connection import ConsentSnapshot
from aisp.stet import mapping
from aisp.stet.schemas import AccountList, BalanceList, BeneficiaryList, EndUserIdentity, Transaction

# The 89C3 sandbox guide's GET /accounts for Marc (consented) and Tech-N Co (not consented), STET 1.4.0.47.
GUIDE_ACCOUNTS = {
    "_links": {"self": {"href": "/accounts"}},
    "connectedPsu": "MALLOW MARC",
    "accounts": [
        {
            "cashAccountType": "CACC",
            "accountId": {"iban": "FR7613807008043001965405158"},
            "resourceId": "038-CPT30019654051",
            "product": "COMPTE CHEQUE",
            "balances": [
                {
                    "balanceType": "VALU",
                    "name": "Solde en Valeur",
                    "balanceAmount": {"amount": "4321.95", "currency": "EUR"},
                    "referenceDate": "2019-09-04",
                },
                {
                    "balanceType": "CLBD",
                    "name": "Solde Comptable",
                    "balanceAmount": {"amount": "4179.95", "currency": "EUR"},
                    "referenceDate": "2019-09-03",
                },
                {"balanceType": "OTHR", "name": "Solde TP", "balanceAmount": {"amount": "4348.95", "currency": "EUR"}},
            ],
            # As the seed prints it: the links are there, without href
            "_links": {"balances": {"templated": False}, "transactions": {"templated": False}},
            "usage": "PRIV",
            "psuStatus": "Account Holder",
            "name": "Compte perso",
            "bicFi": "CCBPFRPPNAN",
            "currency": "EUR",
            "details": "COMPTE CHEQUE",
        },
        {
            "cashAccountType": "CACC",
            "accountId": {"iban": "FR7613807008043001965409135", "currency": "EUR"},
            "resourceId": "038-CPT30019654091",
            "product": "COMPTE COURANT",
            "_links": {},
            "usage": "ORGA",
            "psuStatus": "Account Holder",
            "name": "Tech-N Co",
        },
    ],
}


def test_accounts_keep_the_guides_balances_and_say_which_links_exist():
    listed = ListAccountsResponse.from_bank("13807", mapping.accounts(AccountList.model_validate(GUIDE_ACCOUNTS)))

    marc, technco = listed.accounts
    assert listed.bank_code == "13807"
    assert listed.connected_psu == "MALLOW MARC"
    assert marc.account_id == "038-CPT30019654051"
    assert marc.iban == "FR7613807008043001965405158"
    assert [(b.type, b.amount, b.reference_date) for b in marc.balances] == [
        ("VALU", "4321.95", date(2019, 9, 4)),
        ("CLBD", "4179.95", date(2019, 9, 3)),
        ("OTHR", "4348.95", None),
    ]
    assert marc.links.balances and marc.links.transactions
    assert (marc.name, marc.product, marc.usage, marc.psu_status) == (
        "Compte perso",
        "COMPTE CHEQUE",
        "PRIV",
        "Account Holder",
    )
    # Before consent: no balances, no links; currency from accountId (1.4.2) when not at account level
    assert technco.balances == [] and not technco.links.balances and not technco.links.transactions
    assert technco.currency == "EUR" and technco.usage == "ORGA"


def test_a_card_account_has_no_iban_and_names_its_cash_account():
    card = AccountItem.from_bank(
        mapping.account(
            AccountList.model_validate(
                {
                    "accounts": [
                        {
                            "resourceId": "038-CB497010XXXXXX4242",
                            "cashAccountType": "CARD",
                            "accountId": {"other": {"identification": "497010XXXXXX4242", "schemeName": "CPAN"}},
                            "linkedAccount": "038-CPT30019654061",
                            "name": "Carte",
                        }
                    ]
                }
            ).accounts[0]
        )
    )

    assert card.iban is None and card.cash_account_type == "CARD"
    assert card.linked_account == "038-CPT30019654061"


def test_bpce_1_4_2_transactions_are_signed_and_normalized():
    booked, pending, other = (
        Transaction.model_validate(payload)
        for payload in (
            {
                "resourceId": "R1",
                "entryReference": "E1",
                "transactionAmount": {"amount": "150.00", "currency": "EUR"},
                "creditDebitIndicator": "DBIT",
                "status": "BOOK",
                "bookingDate": "2022-08-25T00:00:00+0200",
                "valueDate": "2022-08-26",
                "transactionDate": "2022-08-24",
                "remittanceInformation": {"unstructured": ["CB CARREFOUR", "PARIS"]},
            },
            {
                "entryReference": "E2",
                "transactionAmount": {"amount": 12.5, "currency": "EUR"},
                "creditDebitIndicator": "CRDT",
                "status": "PDNG",
                "expectedBookingDate": "2022-08-27T00:00:00+0200",
                "remittanceInformation": ["VIR SALAIRE"],
            },
            {
                "transactionAmount": {"amount": "1E+1", "currency": "EUR"},
                "creditDebitIndicator": "CRDT",
                "status": "OTHR",
                "remittanceInformation": "ONE LINE",
            },
        )
    )

    first = TransactionItem.from_bank(mapping.transaction(booked, bank_code="13807"))
    assert first.model_dump() == {
        "id": "R1",
        "entry_reference": "E1",
        "amount": "-150.00",
        "currency": "EUR",
        "credit_debit": "debit",
        "status": "booked",
        "booking_date": date(2022, 8, 25),  # the calendar day as written, not shifted to UTC
        "value_date": date(2022, 8, 26),
        "transaction_date": date(2022, 8, 24),
        "remittance": ["CB CARREFOUR", "PARIS"],
    }
    second = TransactionItem.from_bank(mapping.transaction(pending, bank_code="13807"))
    assert (second.id, second.amount, second.status, second.booking_date) == ("E2", "12.5", "pending", None)
    third = TransactionItem.from_bank(mapping.transaction(other, bank_code="13807"))
    assert (third.id, third.amount, third.status, third.remittance) == (None, "10", "other", ["ONE LINE"])


def test_an_unknown_credit_debit_indicator_is_not_guessed():
    odd = Transaction.model_validate(
        {"transactionAmount": {"amount": "1", "currency": "EUR"}, "creditDebitIndicator": "XXXX", "status": "BOOK"}
    )

    with pytest.raises(BankProtocolError) as raised:
        mapping.transaction(odd, bank_code="13807")

    assert raised.value.details == {
        "bank_code": "13807",
        "operation": "get_transactions",
        "field": "creditDebitIndicator",
    }


@pytest.mark.parametrize(
    ("amount", "text"),
    [("4321.95", "4321.95"), ("-0.00", "0.00"), ("1.5E+2", "150"), ("0.000010", "0.000010"), ("-12", "-12")],
)
def test_amounts_are_plain_decimal_strings(amount, text):
    assert decimal_string(Decimal(amount)) == text


def test_balances_identity_and_beneficiaries():
    (balance,) = BalanceList.model_validate(
        {"balances": [{"balanceType": "XPCD", "name": "Instant", "balanceAmount": {"amount": 10, "currency": "EUR"}}]}
    ).balances
    assert BalanceItem.from_bank(mapping.balance(balance)).amount == "10"

    legacy = IdentityResponse.from_bank(
        mapping.identity(
            EndUserIdentity.model_validate({"connectedPsu": "MALLOW MARC", "connectedPsuFirstName": "Marc"})
        )
    )
    assert (legacy.full_name, legacy.first_name) == ("MALLOW MARC", "Marc")
    modern = IdentityResponse.from_bank(
        mapping.identity(EndUserIdentity.model_validate({"identity": {"fullName": "LEROY JULIE"}}))
    )
    assert modern.full_name == "LEROY JULIE"

    (beneficiary,) = BeneficiaryList.model_validate(
        {
            "beneficiaries": [
                {
                    "id": "B1",
                    "isTrusted": True,
                    "creditor": {"name": "DUPONT"},
                    "creditorAccount": {"iban": "FR7630006000011234567890189"},
                    "creditorAgent": {"bicFi": "AGRIFRPP"},
                }
            ]
        }
    ).beneficiaries
    assert BeneficiaryItem.from_bank(mapping.beneficiary(beneficiary)).model_dump() == {
        "id": "B1",
        "name": "DUPONT",
        "iban": "FR7630006000011234567890189",
        "bic": "AGRIFRPP",
        "is_trusted": True,
    }


@pytest.mark.parametrize(
    ("status", "name"),
    [
        ("BOOK", "booked"),
        ("PDNG", "pending"),
        ("FUTR", "future"),
        ("INFO", "information"),
        ("RJCT", "rejected"),
        ("OTHR", "other"),
        ("XXXX", "other"),
        (" futr ", "future"),
    ],
)
def test_every_stet_1_5_transaction_status_keeps_its_meaning(status, name):
    # Given a transaction in one of STET 1.5's statuses (or an unknown one)
    transaction = Transaction.model_validate(
        {"transactionAmount": {"amount": "1", "currency": "EUR"}, "creditDebitIndicator": "CRDT", "status": status}
    )

    # When normalized / Then a future, information-only or rejected entry is never reported as plain "other"
    assert TransactionItem.from_bank(mapping.transaction(transaction, bank_code="13807")).status == name


def _account(links):
    body = {"resourceId": "038-CPT30019654051", "accountId": {"iban": "FR7613807008043001965405158"}}
    if links is not ...:
        body["_links"] = links
    return AccountList.model_validate({"accounts": [body]}).accounts[0]


@pytest.mark.parametrize(
    ("links", "consent", "expected"),
    [
        # The seed's consented accounts: links without href are links
        ({"balances": {"templated": False}, "transactions": {"templated": False}}, None, (True, True)),
        ({"balances": {}}, None, (True, False)),
        ({"transactions": {"href": "/t"}}, None, (False, True)),
        # The seed's account before consent: "_links": {} says nothing is available, whatever we recorded
        ({}, {"balances": ["FR7613807008043001965405158"]}, (False, False)),
        # No _links at all: the consent on record decides
        (..., {"balances": ["FR7613807008043001965405158"], "transactions": []}, (True, False)),
        (..., None, (False, False)),
    ],
    ids=["seed-templated", "empty-link", "href", "empty-links", "no-links-consented", "no-links-no-consent"],
)
def test_link_availability_follows_the_links_presence_and_the_consent(links, consent, expected):
    snapshot = None if consent is None else ConsentSnapshot(**consent)
    item = AccountItem.from_bank(mapping.account(_account(links)), snapshot)
    assert (item.links.balances, item.links.transactions) == expected
