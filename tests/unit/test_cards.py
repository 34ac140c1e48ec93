"""Deferred-debit cards (STET cashAccountType CARD, accountId.other with schemeName CPAN): listed with their masked
number and linked account, put in a consent as ``{"card": masked number}``, sent to the bank as STET's ``other``."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from aisp.logic import consents
from aisp.models.accounts import AccountItem, ListAccountsResponse
from aisp.models.api import SubmitConsentRequest
from aisp.models.connection import CardReference, ConsentSnapshot
from aisp.models.psu import PsuInfo
from aisp.stet import AccountList, ConsentRequest, mapping
from tests.conftest import FakeLambdaContext

IBAN = "FR7613807008043001965406128"
CARD = "497010XXXXXX4242"
PSU = PsuInfo(ip_address="203.0.113.10", http_method="PUT")

SOPHIE_ACCOUNTS = {
    "accounts": [
        {
            "resourceId": "038-CPT30019654061",
            "cashAccountType": "CACC",
            "accountId": {"iban": IBAN},
            "name": "Compte courant",
            "_links": {"balances": {"templated": False}, "transactions": {"templated": False}},
        },
        {
            "resourceId": "038-CB497010XXXXXX4242",
            "cashAccountType": "CARD",
            "accountId": {"other": {"identification": CARD, "schemeName": "CPAN", "issuer": "CCBPFRPPNAN"}},
            "linkedAccount": "038-CPT30019654061",
            "name": "VISA PREMIER DURAND SOPHIE",
            "balances": [
                {"balanceType": "OTHR", "name": "Encours", "balanceAmount": {"amount": "-312.40", "currency": "EUR"}}
            ],
            "_links": {"balances": {"templated": False}, "transactions": {"templated": False}},
        },
    ]
}


def test_a_card_is_listed_with_its_masked_number_and_its_cash_account():
    cash, card = ListAccountsResponse.from_bank(
        "13807", mapping.accounts(AccountList.model_validate(SOPHIE_ACCOUNTS))
    ).accounts

    assert (card.cash_account_type, card.iban, card.masked_pan) == ("CARD", None, CARD)
    assert card.linked_account == cash.account_id == "038-CPT30019654061"
    assert card.links.balances and card.links.transactions
    assert [(b.type, b.amount) for b in card.balances] == [("OTHR", "-312.40")]
    assert cash.masked_pan is None


def test_a_card_in_the_consent_on_record_makes_its_links_available_when_the_bank_sends_none():
    card = AccountList.model_validate(
        {
            "accounts": [
                {"resourceId": "C1", "cashAccountType": "CARD", "accountId": {"other": {"identification": CARD}}}
            ]
        }
    ).accounts[0]

    consent = ConsentSnapshot(balances=[CardReference(card=CARD)], transactions=[])
    links = AccountItem.from_bank(mapping.account(card), consent).links
    assert (links.balances, links.transactions) == (True, False)


@pytest.mark.parametrize("card", [CARD, "4970 10XX XXXX 4242", "************4242", "497010xxxxxx4242"])
def test_a_masked_card_number_goes_in_a_consent(card):
    request = SubmitConsentRequest.model_validate(
        {
            "balances": [IBAN, {"card": card}],
            "transactions": [{"card": card}],
            "psu_identity": False,
            "trusted_beneficiaries": False,
        }
    )

    assert request.balances[0] == IBAN
    assert request.balances[1] == request.transactions[0]
    assert request.transactions[0].card == "".join(card.split()).upper()


@pytest.mark.parametrize(
    "card",
    ["4970101234564242", "4970-10XX-XXXX-4242", "XXXX", "card 4242", "4970101234564242XXXXXXXXX"],
    ids=["full-number", "dashes", "too-short", "words", "too-long"],
)
def test_a_full_or_malformed_card_number_is_refused_without_echoing_it(card):
    with pytest.raises(ValidationError) as caught:
        SubmitConsentRequest.model_validate(
            {"balances": [{"card": card}], "transactions": [], "psu_identity": False, "trusted_beneficiaries": False}
        )

    assert card not in str(caught.value)
    if card == "4970101234564242":
        assert "never a full number" in str(caught.value)


def test_the_bank_gets_stets_other_identification_with_scheme_cpan():
    body = ConsentRequest(balances=[IBAN], card_balances=[CARD], card_transactions=[CARD]).to_stet("1.4.2.17")

    assert body["balances"] == [{"iban": IBAN}, {"other": {"identification": CARD, "schemeName": "CPAN"}}]
    assert body["transactions"] == [{"other": {"identification": CARD, "schemeName": "CPAN"}}]
    with pytest.raises(ValidationError):
        ConsentRequest(card_balances=["4970101234564242"])


def test_the_consent_use_case_sends_the_card_and_keeps_it_on_the_connection(
    account_services, services, active_connection
):
    from aisp.stet.gateway import StetAccountGateway

    connection = active_connection("user-sophie", "13807")
    request = SubmitConsentRequest.model_validate(
        {
            "balances": [IBAN, {"card": CARD}],
            "transactions": [{"card": CARD}],
            "psu_identity": True,
            "trusted_beneficiaries": False,
        }
    )

    response = consents.submit_consent(
        user_id="user-sophie",
        bank_code="13807",
        request=request,
        psu=PSU,
        lambda_context=FakeLambdaContext(),
        services=account_services,
    )

    # The consent on record holds the card as the app sent it
    assert response.consent.balances == [IBAN, CardReference(card=CARD)]
    stored = services.connections.find("user-sophie", "13807")
    assert stored is not None and stored.connection_id == connection.connection_id
    assert stored.consent == response.consent
    assert json.loads(response.model_dump_json())["consent"]["transactions"] == [{"card": CARD}]

    # And the STET body the gateway builds from it
    sent = {}

    class Client:
        def put_consents(self, access_token, body, psu):
            sent.update(json.loads(body.to_json_bytes()))

    class Clients:
        def get(self, bank_code):
            return Client()

    StetAccountGateway(Clients).put_consents("13807", access_token="t", consent=request, psu=PSU)
    assert sent["balances"] == [{"iban": IBAN}, {"other": {"identification": CARD, "schemeName": "CPAN"}}]
    assert sent["transactions"] == [{"other": {"identification": CARD, "schemeName": "CPAN"}}]
