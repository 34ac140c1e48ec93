"""Unit tests for the STET wire models and wire-level helpers (no network)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests

from aisp.errors import BankProtocolError, InvalidRequestError
from aisp.stet import (
    AccountList,
    BalanceList,
    BalanceType,
    BeneficiaryList,
    ConsentRequest,
    CreditDebitIndicator,
    EndUserIdentity,
    PsuContext,
    TokenResponse,
    Transaction,
    TransactionPage,
    build_authorization_url,
)
from aisp.stet.client import paris_midnight
from aisp.stet.errors import BpceCode, parse_error_info, parse_retry_after
from aisp.stet.schemas import StetErrorBody, decode_json, parse_stet

pytestmark = pytest.mark.disable_socket

# GET /accounts bodies from the 89C3 sandbox guide ("Sandbox Assembly"), verbatim except that the guide's
# invalid JSON (trailing commas after "templated": false, missing final brace) is corrected.
GUIDE_ACCOUNTS_BEFORE_CONSENT = """
{
  "_links": {"last": {}, "self": {}, "first": {}},
  "accounts": [
    {
      "cashAccountType": "CACC",
      "accountId": {"iban": "FR7613807008043001965409135"},
      "resourceId": "038-CPT30019654091",
      "product": "COMPTE COURANT",
      "_links": {},
      "usage": "ORGA",
      "psuStatus": "Account Holder",
      "name": "Tech-N Co",
      "bicFi": "CCBPFRPPNAN",
      "currency": "EUR",
      "details": "COMPTE COURANT"
    }
  ]
}
"""

GUIDE_ACCOUNTS_AFTER_CONSENT = """
{
  "_links": {"last": {}, "self": {}, "first": {}},
  "accounts": [
    {
      "cashAccountType": "CACC",
      "accountId": {"iban": "FR7613807008043001965405158"},
      "resourceId": "038-CPT30019654051",
      "product": "COMPTE CHEQUE",
      "balances": [
        {"balanceType": "VALU", "name": "Solde en Valeur",
         "balanceAmount": {"amount": "4321.95", "currency": "EUR"}, "referenceDate": "2019-09-04"},
        {"balanceType": "CLBD", "name": "Solde Comptable",
         "balanceAmount": {"amount": "4179.95", "currency": "EUR"}, "referenceDate": "2019-09-03"},
        {"balanceType": "OTHR", "name": "Solde TP", "balanceAmount": {"amount": "4348.95", "currency": "EUR"}}
      ],
      "_links": {"balances": {"templated": false}, "transactions": {"templated": false}},
      "usage": "PRIV",
      "psuStatus": "Account Holder",
      "name": "Compte perso",
      "bicFi": "CCBPFRPPNAN",
      "currency": "EUR",
      "details": "COMPTE CHEQUE"
    },
    {
      "cashAccountType": "CACC",
      "accountId": {"iban": "FR7613807008043001965405255"},
      "resourceId": "038-CPT30019654052",
      "product": "COMPTE CHEQUE",
      "balances": [
        {"balanceType": "VALU", "name": "Solde en Valeur",
         "balanceAmount": {"amount": "459.56", "currency": "EUR"}, "referenceDate": "2019-09-04"},
        {"balanceType": "CLBD", "name": "Solde Comptable",
         "balanceAmount": {"amount": "459.56", "currency": "EUR"}, "referenceDate": "2019-09-03"},
        {"balanceType": "OTHR", "name": "Solde TP", "balanceAmount": {"amount": "459.56", "currency": "EUR"}}
      ],
      "_links": {"balances": {"templated": false}, "transactions": {"templated": false}},
      "usage": "PRIV",
      "psuStatus": "Account Holder",
      "name": "Retrait et Cheques",
      "bicFi": "CCBPFRPPNAN",
      "currency": "EUR",
      "details": "COMPTE CHEQUE"
    }
  ],
  "connectedPsu": "MALLOW MARC"
}
"""

GUIDE_TOKEN = """{
  "access_token": "KXZyspFBZ1R6NqWQdmsZhfdo1nbjK7MoI0Kr2rSi1mSCFNehAs6iLw",
  "token_type": "Bearer",
  "expires_in": 3600,
  "scope": "aisp offline_access",
  "refresh_token": "KUZyspFBZ1R6NqWQdmsZhfdo1nbjK7MoD0Kr2rSi1mSCFNehAs6iLa"
}"""

# A BPCE-like 1.4.2 transactions page (shapes from NOTES §5: offset without colon, OTHR without bookingDate,
# remittance split over unstructured lines, relative next, "previous" key).
BPCE_TRANSACTIONS = {
    "transactions": [
        {
            "resourceId": "1234",
            "entryReference": "1234",
            "transactionAmount": {"amount": "12.50", "currency": "EUR"},
            "creditDebitIndicator": "DBIT",
            "status": "BOOK",
            "bookingDate": "2022-08-25T00:00:00+0200",
            "valueDate": "2022-08-24",
            "transactionDate": "2022-08-23",
            "remittanceInformation": {"unstructured": ["CB CARREFOUR", "23/08 PARIS"]},
        },
        {
            "resourceId": "1235",
            "transactionAmount": {"amount": 99.9, "currency": "EUR"},
            "creditDebitIndicator": "CRDT",
            "status": "OTHR",
            "remittanceInformation": ["VIR SEPA"],
        },
    ],
    "_links": {
        "self": {"href": "/stet/psd2/v1.4.2/accounts/038-CPT30019654051/transactions?page=1", "templated": True},
        "next": {"href": "/stet/psd2/v1.4.2/accounts/038-CPT30019654051/transactions?page=2"},
        "previous": {"href": ""},
        "parent-list": {"href": "/stet/psd2/v1.4.2/accounts"},
    },
}


def _tx(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "transactionAmount": {"amount": "1.00", "currency": "EUR"},
        "creditDebitIndicator": "DBIT",
        "status": "BOOK",
    }
    base.update(overrides)
    return base


# ----------------------------------------------------------------------------------------------------------------
# Accounts, balances
# ----------------------------------------------------------------------------------------------------------------


def test_guide_accounts_before_consent() -> None:
    # Given the guide's GET /accounts body for a PSU without consent
    payload = json.loads(GUIDE_ACCOUNTS_BEFORE_CONSENT)

    # When parsed
    result = parse_stet(AccountList, payload, where="get_accounts")

    # Then the account is there, without balances, with an empty _links
    assert len(result.accounts) == 1
    account = result.accounts[0]
    assert account.resource_id == "038-CPT30019654091"
    assert account.iban == "FR7613807008043001965409135"
    assert account.cash_account_type == "CACC"
    assert account.usage == "ORGA"
    assert account.currency == "EUR"
    assert account.balances == []
    assert account.links is not None
    assert account.links.balances is None
    assert result.connected_psu is None
    assert result.end_user_identity is None


def test_guide_accounts_after_consent_with_embedded_balances_and_connected_psu() -> None:
    # Given the guide's GET /accounts body after PUT /consents (1.4.0 shape with connectedPsu)
    payload = json.loads(GUIDE_ACCOUNTS_AFTER_CONSENT)

    # When parsed
    result = parse_stet(AccountList, payload, where="get_accounts")

    # Then balances are Decimals typed by code, dates are dates, and the identity is exposed
    assert [a.resource_id for a in result.accounts] == ["038-CPT30019654051", "038-CPT30019654052"]
    balances = result.accounts[0].balances
    assert [b.balance_type for b in balances] == [BalanceType.VALU, BalanceType.CLBD, BalanceType.OTHR]
    assert balances[0].balance_amount.amount == Decimal("4321.95")
    assert balances[0].balance_amount.currency == "EUR"
    assert balances[0].reference_date == date(2019, 9, 4)
    assert balances[2].reference_date is None
    assert result.accounts[0].links is not None
    assert result.accounts[0].links.transactions is not None
    assert result.accounts[0].links.transactions.templated is False
    assert result.connected_psu == "MALLOW MARC"
    assert result.end_user_identity == EndUserIdentity(full_name="MALLOW MARC")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("-150.00", Decimal("-150.00")), (4321.95, Decimal("4321.95")), (12, Decimal(12)), (" 7.5 ", Decimal("7.5"))],
)
def test_amount_from_string_or_number(raw: Any, expected: Decimal) -> None:
    # Given a balance whose amount is a string or a JSON number
    payload = {"balances": [{"balanceType": "CLBD", "balanceAmount": {"amount": raw, "currency": "EUR"}}]}

    # When parsed
    result = parse_stet(BalanceList, payload, where="get_balances")

    # Then the amount is an exact Decimal (no binary float artefacts)
    assert result.balances[0].balance_amount.amount == expected
    assert isinstance(result.balances[0].balance_amount.amount, Decimal)


@pytest.mark.parametrize("raw", ["abc", True, None, "NaN", "Infinity", [], {}])
def test_bad_amount_is_protocol_error(raw: Any) -> None:
    # Given a balance with an unusable amount
    payload = {"balances": [{"balanceType": "CLBD", "balanceAmount": {"amount": raw, "currency": "EUR"}}]}

    # When / Then the error names the field path, never the value
    with pytest.raises(BankProtocolError) as excinfo:
        parse_stet(BalanceList, payload, where="get_balances", bank_code="13807", request_id="rid")
    assert excinfo.value.details["fields"] == ["balances.0.balanceAmount.amount"]
    assert excinfo.value.details["where"] == "get_balances"
    assert excinfo.value.bank_code == "13807"
    assert excinfo.value.request_id == "rid"


def test_unknown_enum_values_are_kept_as_strings() -> None:
    # Given codes no STET version defines
    accounts = {"accounts": [{"cashAccountType": "LOAN", "usage": "SHARED", "resourceId": "x"}]}
    balances = {"balances": [{"balanceType": "ITBD", "balanceAmount": {"amount": "1", "currency": "EUR"}}]}
    page = {"transactions": [_tx(status="XXXX", creditDebitIndicator="NEUT")]}

    # When parsed
    account = parse_stet(AccountList, accounts, where="a").accounts[0]
    balance = parse_stet(BalanceList, balances, where="b").balances[0]
    transaction = parse_stet(TransactionPage, page, where="t").transactions[0]

    # Then they survive as plain strings
    assert (account.cash_account_type, account.usage) == ("LOAN", "SHARED")
    assert balance.balance_type == "ITBD"
    assert (transaction.status, transaction.credit_debit_indicator) == ("XXXX", "NEUT")


def test_extra_fields_ignored_and_names_accepted() -> None:
    # Given a body with unknown fields, and a model built by Python names
    payload = {"accounts": [{"resourceId": "1", "somethingNew": {"a": 1}, "workspace": "w"}], "extra": 1}

    # When parsed / built
    result = parse_stet(AccountList, payload, where="a")
    built = AccountList(accounts=[], connected_psu="X")

    # Then nothing fails
    assert result.accounts[0].resource_id == "1"
    assert built.connected_psu == "X"


@pytest.mark.parametrize("payload", [None, {}, {"accounts": None}])
def test_empty_bodies_give_empty_lists(payload: Any) -> None:
    # Given an empty (204) or null-ish body
    # When parsed
    accounts = parse_stet(AccountList, payload, where="a")
    balances = parse_stet(BalanceList, None, where="b")
    beneficiaries = parse_stet(BeneficiaryList, None, where="c")
    page = parse_stet(TransactionPage, None, where="d")

    # Then each is an empty list
    assert accounts.accounts == []
    assert balances.balances == []
    assert beneficiaries.beneficiaries == []
    assert page.transactions == []
    assert page.next_url is None


# ----------------------------------------------------------------------------------------------------------------
# Transactions
# ----------------------------------------------------------------------------------------------------------------


def test_bpce_transactions_page() -> None:
    # Given a BPCE-like transactions page
    # When parsed
    page = parse_stet(TransactionPage, BPCE_TRANSACTIONS, where="get_transactions")

    # Then dates keep the calendar day as written, remittance lines are flattened, links read "previous"
    first, second = page.transactions
    assert first.booking_date == date(2022, 8, 25)
    assert first.value_date == date(2022, 8, 24)
    assert first.transaction_date == date(2022, 8, 23)
    assert first.remittance_information == ["CB CARREFOUR", "23/08 PARIS"]
    assert first.signed_amount == Decimal("-12.50")
    assert first.credit_debit_indicator == CreditDebitIndicator.DBIT
    assert second.booking_date is None
    assert second.transaction_amount.amount == Decimal("99.9")
    assert second.signed_amount == Decimal("99.9")
    assert second.remittance_information == ["VIR SEPA"]
    assert page.links is not None
    assert page.links.next is not None
    assert page.links.next.href == "/stet/psd2/v1.4.2/accounts/038-CPT30019654051/transactions?page=2"
    assert page.links.prev is not None
    assert page.links.prev.href == ""
    assert page.links.self_link is not None
    assert page.links.self_link.templated is True
    assert page.links.parent_list is not None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2022-08-25T00:00:00+0200", date(2022, 8, 25)),
        ("2022-08-25T23:30:00-0500", date(2022, 8, 25)),
        ("2019-09-04", date(2019, 9, 4)),
        ("2019-09-04T10:11:12Z", date(2019, 9, 4)),
        ("2019-09-04T10:11:12.123+02:00", date(2019, 9, 4)),
        ("2021-05-27 14:07:11.000000000", date(2021, 5, 27)),
        ("not a date", None),
        ("2019-13-45", None),
        (20190904, None),
        (None, None),
    ],
)
def test_dates_are_tolerant(raw: Any, expected: date | None) -> None:
    # Given a transaction with a date in one of the observed formats
    # When parsed
    transaction = Transaction.model_validate(_tx(bookingDate=raw))

    # Then the calendar date is kept where possible, else None (never a failure)
    assert transaction.booking_date == expected


def test_last_change_date_time_variants() -> None:
    # Given balances with the observed date-time formats
    payload = {
        "balances": [
            {"balanceType": "CLBD", "balanceAmount": {"amount": "1", "currency": "EUR"}, "lastChangeDateTime": raw}
            for raw in ("2021-04-07T23:51:12+0200", "2021-04-07T21:51:12Z", "garbage")
        ]
    }

    # When parsed
    balances = parse_stet(BalanceList, payload, where="b").balances

    # Then offsets without colon and Z are understood, garbage becomes None
    assert balances[0].last_change_date_time == datetime(2021, 4, 7, 21, 51, 12, tzinfo=UTC)
    assert balances[1].last_change_date_time == datetime(2021, 4, 7, 21, 51, 12, tzinfo=UTC)
    assert balances[2].last_change_date_time is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ONE LINE", ["ONE LINE"]),
        (["A", "B"], ["A", "B"]),
        ({"unstructured": ["A", "B"]}, ["A", "B"]),
        ({"unstructured": "A"}, ["A"]),
        ({"unstructured": ["A"], "structured": [{"reference": "RF18", "referenceType": "SCOR"}]}, ["A", "RF18"]),
        ({"structured": ["S1"]}, ["S1"]),
        ({}, []),
        ([], []),
        ("", []),
        (None, []),
    ],
)
def test_remittance_shapes(raw: Any, expected: list[str]) -> None:
    # Given a transaction with one of the remittanceInformation shapes (1.4.0 list, 1.4.2 object, plain string)
    # When parsed
    transaction = Transaction.model_validate(_tx(remittanceInformation=raw))

    # Then it is normalised to a list of strings
    assert transaction.remittance_information == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # STET 1.5 StructuredRemittanceInformation: the creditor reference sits one level down.
        (
            {
                "unstructured": ["FACTURE 12"],
                "structured": [
                    {
                        "creditorReferenceInformation": {
                            "type": {"code": "SCOR", "issuer": "ISO"},
                            "reference": "RF18539007547034",
                        },
                        "referredDocumentAmount": {"remittedAmount": {"amount": 12.5, "currency": "EUR"}},
                    }
                ],
            },
            ["FACTURE 12", "RF18539007547034"],
        ),
        # Only referred documents: their numbers.
        ({"structured": [{"referredDocumentInformation": [{"number": "F-1"}, {"number": "F-2"}]}]}, ["F-1 F-2"]),
        # What we cannot read is skipped, never the page.
        (42, []),
        ([1, "A", None], ["A"]),
        ({"unstructured": [{"x": 1}, "B"], "structured": [{"invoicer": {"name": "X"}}, "S"]}, ["B", "S"]),
        ({"unstructured": 7}, []),
    ],
    ids=["1.5-creditor-reference", "referred-documents", "number", "mixed-list", "odd-items", "odd-unstructured"],
)
def test_remittance_detail_never_fails_the_page(raw: Any, expected: list[str]) -> None:
    # Given a page whose one transaction has a remittance of the 1.5 structured shape, or one we cannot read
    payload = {"transactions": [_tx(remittanceInformation=raw), _tx(entryReference="2")]}

    # When the page is parsed
    page = parse_stet(TransactionPage, payload, where="get_transactions")

    # Then the page survives whole, with what could be read of the remittance
    assert [t.remittance_information for t in page.transactions] == [expected, []]


def test_optional_details_of_the_wrong_type_are_absent_not_fatal() -> None:
    # Given an account list and a page where optional members have the wrong JSON type
    accounts = {
        "accounts": [
            {
                "resourceId": 123,
                "accountId": "FR7613807008043001965405158",
                "name": ["x"],
                "balances": [
                    {"balanceType": "CLBD", "name": "ok", "balanceAmount": {"amount": "1.00", "currency": "EUR"}},
                    {"balanceType": "VALU", "balanceAmount": "lots"},
                ],
                "_links": {"balances": {"href": 5, "templated": "no"}},
            }
        ]
    }
    page = {"transactions": [_tx(entryReference=42, endToEndId={"x": 1}, additionalTransactionInformation=[1])]}

    # When parsed
    (account,) = parse_stet(AccountList, accounts, where="get_accounts").accounts
    (transaction,) = parse_stet(TransactionPage, page, where="get_transactions").transactions

    # Then the readable members are kept (an integer id as text), the others are absent, the bad balance dropped
    assert account.resource_id == "123" and account.account_id is None and account.name is None
    assert [b.name for b in account.balances] == ["ok"]
    assert account.links is not None and account.links.balances is not None
    assert account.links.balances.href is None and account.links.balances.templated is None
    assert transaction.entry_reference == "42"
    assert transaction.end_to_end_id is None and transaction.additional_transaction_information is None


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ([], ["<body>"]),
        ("a string", ["<body>"]),
        ({"transactions": "nope"}, ["transactions"]),
        (
            {"transactions": [{"status": "BOOK"}]},
            ["transactions.0.creditDebitIndicator", "transactions.0.transactionAmount"],
        ),
        ({"transactions": [_tx(transactionAmount={"amount": "1"})]}, ["transactions.0.transactionAmount.currency"]),
        ({"transactions": [_tx(transactionAmount=None)]}, ["transactions.0.transactionAmount"]),
        ({"transactions": [_tx(status=None)]}, ["transactions.0.status"]),
    ],
    ids=["list", "string", "not-a-list", "missing-fields", "missing-currency", "null-amount", "null-status"],
)
def test_malformed_transactions_body_is_protocol_error(payload: Any, fields: list[str]) -> None:
    # Given a structurally wrong body
    # When parsed
    with pytest.raises(BankProtocolError) as excinfo:
        parse_stet(TransactionPage, payload, where="get_transactions")

    # Then a BankProtocolError names the fields (never KeyError/TypeError, never values)
    assert excinfo.value.details["fields"] == fields
    assert excinfo.value.message == "bank response does not match the expected schema"


def test_protocol_error_never_contains_values() -> None:
    # Given a wrong body carrying an IBAN and a name where required structure is expected
    payload = {
        "transactions": [
            _tx(transactionAmount={"amount": "FR7613807008043001965405158", "currency": "EUR"}),
            _tx(creditDebitIndicator=None, status={"MALLOW MARC": 1}),
        ]
    }

    # When parsed
    with pytest.raises(BankProtocolError) as excinfo:
        parse_stet(TransactionPage, payload, where="get_transactions")

    # Then neither the message, the details nor the chained validation error text show the values
    rendered = str(excinfo.value) + repr(excinfo.value.details) + str(excinfo.value.__cause__)
    assert "FR7613807008043001965405158" not in rendered
    assert "MALLOW" not in rendered
    assert set(excinfo.value.details["fields"]) == {
        "transactions.0.transactionAmount.amount",
        "transactions.1.creditDebitIndicator",
        "transactions.1.status",
    }


def test_links_tolerate_junk() -> None:
    # Given links that are strings, junk or absent
    payload = {"transactions": [], "_links": {"next": "/page/2", "self": 12, "prev": None}}
    odd = {"transactions": [], "_links": "nope"}

    # When parsed
    page = parse_stet(TransactionPage, payload, where="t")
    odd_page = parse_stet(TransactionPage, odd, where="t")

    # Then a string becomes an href and junk is ignored
    assert page.links is not None
    assert page.links.next is not None
    assert page.links.next.href == "/page/2"
    assert page.links.self_link is None
    assert odd_page.links is None


# ----------------------------------------------------------------------------------------------------------------
# Identity, beneficiaries
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {
            "connectedPsu": "MALLOW MARC",
            "connectedPsuFirstName": "MARC",
            "connectedPsuLastName": "MALLOW",
            "connectedPsuNamePrefix": "MIST",
            "_links": {"self": {"href": "/x"}},
        },
        {"identity": {"fullName": "MALLOW MARC", "firstName": "MARC", "lastName": "MALLOW", "namePrefix": "MIST"}},
    ],
    ids=["1.4.2", "1.5"],
)
def test_identity_shapes(payload: dict[str, Any]) -> None:
    # Given an identity body in the 1.4.2 or 1.5 shape
    # When parsed
    identity = parse_stet(EndUserIdentity, payload, where="get_end_user_identity")

    # Then both give the same model
    assert identity == EndUserIdentity(
        full_name="MALLOW MARC", first_name="MARC", last_name="MALLOW", name_prefix="MIST"
    )


def test_identity_with_non_object_is_protocol_error() -> None:
    # Given a 1.5 identity that is not an object
    # When / Then
    with pytest.raises(BankProtocolError) as excinfo:
        parse_stet(EndUserIdentity, {"identity": "MALLOW MARC"}, where="get_end_user_identity")
    assert "MALLOW" not in str(excinfo.value) + repr(excinfo.value.details)


def test_beneficiaries() -> None:
    # Given a STET trusted beneficiaries body
    payload = {
        "beneficiaries": [
            {
                "id": "b1",
                "isTrusted": True,
                "creditor": {"name": "ACME"},
                "creditorAccount": {"iban": "FR7613807008043001965405158"},
                "creditorAgent": {"bicFi": "CCBPFRPPNAN"},
            }
        ],
        "_links": {"self": {"href": "/trusted-beneficiaries"}},
    }

    # When parsed
    result = parse_stet(BeneficiaryList, payload, where="b")

    # Then
    beneficiary = result.beneficiaries[0]
    assert beneficiary.is_trusted is True
    assert beneficiary.creditor is not None
    assert beneficiary.creditor.name == "ACME"
    assert beneficiary.creditor_account is not None
    assert beneficiary.creditor_account.iban == "FR7613807008043001965405158"
    assert beneficiary.creditor_agent is not None
    assert beneficiary.creditor_agent.bic_fi == "CCBPFRPPNAN"


# ----------------------------------------------------------------------------------------------------------------
# Tokens
# ----------------------------------------------------------------------------------------------------------------


def test_guide_token_response_hides_tokens() -> None:
    # Given the guide's token response
    token = parse_stet(TokenResponse, json.loads(GUIDE_TOKEN), where="exchange_code")

    # When rendered in every usual way
    rendered = repr(token) + str(token) + json.dumps(token.model_dump(mode="json")) + token.model_dump_json()

    # Then secrets are readable only explicitly
    assert token.access_token.get_secret_value() == "KXZyspFBZ1R6NqWQdmsZhfdo1nbjK7MoI0Kr2rSi1mSCFNehAs6iLw"
    assert token.refresh_token is not None
    assert token.refresh_token.get_secret_value() == "KUZyspFBZ1R6NqWQdmsZhfdo1nbjK7MoD0Kr2rSi1mSCFNehAs6iLa"
    assert (token.token_type, token.expires_in, token.scope) == ("Bearer", 3600, "aisp offline_access")
    assert "KXZysp" not in rendered
    assert "KUZysp" not in rendered


@pytest.mark.parametrize("refresh", [None, "", "   "])
def test_refresh_response_may_omit_refresh_token(refresh: str | None) -> None:
    # Given a refresh response without (or with a blank) refresh_token
    payload: dict[str, Any] = {"access_token": "a", "token_type": "Bearer", "expires_in": "3600"}
    if refresh is not None:
        payload["refresh_token"] = refresh

    # When parsed
    token = parse_stet(TokenResponse, payload, where="refresh")

    # Then the refresh token is absent (the caller keeps the old one) and expires_in is an int
    assert token.refresh_token is None
    assert token.expires_in == 3600


@pytest.mark.parametrize("payload", [{}, {"access_token": ""}, {"access_token": 12}, {"token_type": "Bearer"}])
def test_bad_token_response_is_protocol_error(payload: dict[str, Any]) -> None:
    # Given a token response without a usable access token
    # When / Then
    with pytest.raises(BankProtocolError) as excinfo:
        parse_stet(TokenResponse, payload, where="refresh")
    assert excinfo.value.details["fields"] == ["access_token"]


# ----------------------------------------------------------------------------------------------------------------
# Consent body
# ----------------------------------------------------------------------------------------------------------------


def test_consent_request_serialises_to_stet_access_bytes() -> None:
    # Given the consent of the golden put-consents vector (IBANs as typed by a user, with spaces)
    consent = ConsentRequest(
        balances=["FR76 1380 7008 0430 0196 5405 158"],
        transactions=[" FR7613807008043001965405158"],
        trusted_beneficiaries=True,
        psu_identity=True,
    )

    # When serialised
    body = consent.to_json_bytes()

    # Then it is byte-identical to the vector's body (so its Digest matches)
    assert body == (
        b'{"balances":[{"iban":"FR7613807008043001965405158"}],"transactions":[{"iban":"FR7613807008043001965405158"}],'
        b'"trustedBeneficiaries":true,"psuIdentity":true}'
    )
    assert "FR76" not in repr(consent)


def test_consent_request_rejects_non_iban_without_echoing_it() -> None:
    # Given an invalid IBAN
    # When / Then the validation error does not repeat the input
    with pytest.raises(ValueError, match="not an IBAN") as excinfo:
        ConsentRequest(balances=["NOT-AN-IBAN-12345"])
    assert "NOT-AN-IBAN-12345" not in str(excinfo.value)


def test_consent_request_defaults_are_an_empty_access() -> None:
    # Given / When an empty consent / Then all four members are present, as STET 1.4.2 requires
    assert ConsentRequest().to_stet() == {
        "balances": [],
        "transactions": [],
        "trustedBeneficiaries": False,
        "psuIdentity": False,
    }


@pytest.mark.parametrize(
    ("version", "owners"), [("1.4.0.47", False), ("1.4.2.17", False), ("1.5.0.43", True), ("1.6.2", True)]
)
def test_consent_request_adds_owners_from_stet_1_5(version: str, owners: bool) -> None:
    # Given / When an empty consent for a bank of this STET version / Then 1.5+ has its required "owners"
    access = ConsentRequest().to_stet(version)
    assert ("owners" in access) is owners
    if owners:
        assert access["owners"] == []


# ----------------------------------------------------------------------------------------------------------------
# Wire-level helpers: JSON decoding, error bodies, Retry-After, authorize URL, PSU headers
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"   \n", None])
def test_decode_json_empty_is_none(content: bytes | None) -> None:
    # Given / When / Then
    assert decode_json(content, where="x") is None


@pytest.mark.parametrize("content", [b"<html><body>Service Unavailable</body></html>", b'{"a":', b"\xff\xfe"])
def test_decode_json_non_json_is_protocol_error(content: bytes) -> None:
    # Given a non-JSON 2xx body
    # When / Then the error does not carry the body, not even as its cause
    with pytest.raises(BankProtocolError) as excinfo:
        decode_json(content, where="get_accounts", status=200)
    assert excinfo.value.details == {"status": 200, "where": "get_accounts"}
    assert excinfo.value.__cause__ is None


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update(headers or {})
    return response


@pytest.mark.parametrize(
    ("body", "code", "oauth"),
    [
        (
            b'{"timestamp":"2021-05-27 14:07:11.000000000","status":404,"error":"Not Found","message":"NAAC"}',
            "NAAC",
            None,
        ),
        (b'{"timestamp":"2021-04-07T23:51:12+0200","status":"403","message":"TMRQ","path":"/x"}', "TMRQ", None),
        (b'{"status":500,"message":"INTE - erreur"}', "INTE", None),
        (b'{"error":"NIMP"}', "NIMP", None),
        (b'{"error":"invalid_grant","error_description":"expired"}', None, "invalid_grant"),
        (b'{"message":"XNAACX"}', None, None),
        (b"<html>oops</html>", None, None),
        (b"", None, None),
        (b"[1,2]", None, None),
        (b'{"status":{"a":1},"message":["NAAC"]}', None, None),
    ],
)
def test_parse_error_info_is_lenient(body: bytes, code: str | None, oauth: str | None) -> None:
    # Given an error body of any shape
    # When parsed
    info = parse_error_info(_response(400, body))

    # Then known codes are found and nothing raises
    assert (info.bpce_code, info.oauth_error) == (BpceCode(code) if code else None, oauth)


def test_stet_error_body_keeps_timestamp_as_text() -> None:
    # Given / When an ErrorModel with a non-ISO timestamp
    body = StetErrorBody.model_validate(
        {"timestamp": "2021-05-27 14:07:11.000000000", "status": 404, "message": "NAAC"}
    )

    # Then it is kept verbatim
    assert body.timestamp == "2021-05-27 14:07:11.000000000"
    assert body.status == 404


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120),
        (" 5 ", 5),
        ("Tue, 24 Nov 2026 10:01:00 GMT", 60),
        ("Tue, 24 Nov 2026 09:00:00 GMT", 0),
        ("soon", None),
        ("-3", None),
        ("", None),
        (None, None),
        ("999999999", 86400),
    ],
)
def test_parse_retry_after(value: str | None, expected: int | None) -> None:
    # Given a fixed clock
    now = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)

    # When / Then
    assert parse_retry_after(value, now=now) == expected


def test_build_authorization_url_encodes_parameters() -> None:
    # Given a redirect URI with a query and a state with reserved characters
    url = build_authorization_url(
        "https://www.13807.sandbox.api.89c3.com/",
        client_id="PSDFR-ACPR-13807",
        redirect_uri="https://myapp.fr/cb?x=1&y=2",
        state="a b/c+d",
    )

    # When decoded
    parts = urlsplit(url)
    query = parse_qs(parts.query, strict_parsing=True)

    # Then the path is the 89C3 one and each parameter round-trips exactly
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "https://www.13807.sandbox.api.89c3.com/stet/psd2/oauth/authorize"
    )
    assert query == {
        "response_type": ["code"],
        "client_id": ["PSDFR-ACPR-13807"],
        "redirect_uri": ["https://myapp.fr/cb?x=1&y=2"],
        "scope": ["aisp"],
        "state": ["a b/c+d"],
    }
    assert list(query) == ["response_type", "client_id", "redirect_uri", "scope", "state"]
    assert " " not in url


def test_authorize_scope_is_the_stet_scope_not_the_seeds_upper_case() -> None:
    # The seed's authorize example says "scope:AISP"; we send STET's scope "aisp" on purpose. OAuth scopes are
    # case-sensitive (RFC 6749 §3.3); STET 1.4.0.47 and 1.5 define only "aisp" (securityDefinitions/securitySchemes),
    # the seed's own token responses grant "aisp offline_access", and production 89C3 integrations (NOTES §6) send
    # "aisp". The offline sandbox takes either (tests/sandbox: test_the_seed_upper_case_scope_is_accepted).
    url = build_authorization_url("https://b.example", client_id="c", redirect_uri="https://r.example/cb", state="s")

    assert parse_qs(urlsplit(url).query)["scope"] == ["aisp"]


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 1, 5), "2026-01-05T00:00:00+01:00"),
        (date(2026, 3, 29), "2026-03-29T00:00:00+01:00"),  # the March switch day: midnight is still winter time
        (date(2026, 3, 30), "2026-03-30T00:00:00+02:00"),
        (date(2026, 10, 25), "2026-10-25T00:00:00+02:00"),  # the October switch day: midnight is still summer time
        (date(2026, 10, 26), "2026-10-26T00:00:00+01:00"),
        (date(2027, 3, 28), "2027-03-28T00:00:00+01:00"),
        (date(2027, 3, 29), "2027-03-29T00:00:00+02:00"),
        (date(2024, 12, 31), "2024-12-31T00:00:00+01:00"),
    ],
)
def test_paris_midnight_matches_the_time_zone_database(day: date, expected: str) -> None:
    # Given a day around the EU summer-time switches / When rendered / Then it is Paris midnight, as zoneinfo says
    assert paris_midnight(day) == expected
    paris = datetime.combine(day, datetime.min.time(), ZoneInfo("Europe/Paris"))
    assert datetime.fromisoformat(expected) == paris and datetime.fromisoformat(expected).utcoffset() == (
        paris.utcoffset()
    )


def test_psu_context_headers_in_stet_order() -> None:
    # Given a full PSU context
    psu = PsuContext(
        ip_address="2001:db8::1",
        ip_port=443,
        http_method="GET",
        date=datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC),
        user_agent="Mozilla/5.0",
        accept_language="fr-FR",
        device_id="dev-1",
    )

    # When rendered / Then only the given ones appear, with STET names
    assert psu.to_headers() == {
        "PSU-IP-Address": "2001:db8::1",
        "PSU-IP-Port": "443",
        "PSU-HTTP-Method": "GET",
        "PSU-Date": "Tue, 24 Nov 2026 10:00:00 GMT",
        "PSU-User-Agent": "Mozilla/5.0",
        "PSU-Accept-Language": "fr-FR",
        "PSU-Device-ID": "dev-1",
    }
    assert PsuContext(ip_address="192.168.0.1").to_headers() == {"PSU-IP-Address": "192.168.0.1"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ip_address": "not-an-ip"},
        {"ip_address": ""},
        {"ip_address": "10.0.0.1", "ip_port": 70000},
        {"ip_address": "10.0.0.1", "user_agent": "x\r\nX-Injected: 1"},
    ],
)
def test_psu_context_validation(kwargs: dict[str, Any]) -> None:
    # Given / When / Then an invalid PSU context is refused without echoing the value
    with pytest.raises(InvalidRequestError) as excinfo:
        PsuContext(**kwargs)
    assert "Injected" not in str(excinfo.value)
    assert "not-an-ip" not in str(excinfo.value)
