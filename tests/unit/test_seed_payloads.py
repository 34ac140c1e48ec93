"""The 89C3 guide's sample payloads, as the guide prints them, through the client and the API models.

The payloads are in ``tests/fixtures/seed/89c3-seed-payloads.txt`` verbatim; ``tests/seed.py`` names every repair a
printed page needed (non-breaking spaces, trailing commas, a missing brace). The bank here is in-process; the offline
sandbox serving the same bodies is tested in ``tests/sandbox/test_sandbox_seed.py``.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from aisp.models.accounts import ListAccountsResponse
from aisp.models.api import SubmitConsentRequest
from aisp.stet import BankClient, ConsentRequest, TokenResponse, mapping
from tests.seed import GUIDE, Repair, repaired, seed_json, seed_names, seed_text
from tests.stet_contract import InProcessBank, in_process_client

ORIGIN = "https://www.13807.sandbox.api.89c3.com"


def _client(bank: InProcessBank) -> BankClient:
    return in_process_client(bank, base_url=ORIGIN, api_prefix="/stet/psd2/v1", stet_version="1.4.0.47")


@pytest.mark.skipif(not GUIDE.is_file(), reason="shared/reference is not beside the repository")
def test_every_payload_is_the_guides_text_byte_for_byte():
    guide = GUIDE.read_text(encoding="utf-8")
    assert seed_names() == [
        "token-response",
        "accounts-tech-n-co",
        "accounts-marc",
        "consent-body",
        "refresh-token-response",
    ]
    for name in seed_names():
        assert seed_text(name) in guide, name


@pytest.mark.parametrize(
    ("name", "repairs"),
    [
        ("token-response", [Repair.NBSP, Repair.OPENING_BRACE]),
        ("accounts-tech-n-co", [Repair.NBSP]),
        ("accounts-marc", [Repair.NBSP, Repair.TRAILING_COMMA, Repair.CLOSING_BRACE]),
        ("consent-body", [Repair.NBSP]),
        ("refresh-token-response", [Repair.NBSP, Repair.OPENING_BRACE]),
    ],
)
def test_the_printed_payloads_keep_their_quirks_and_need_only_the_named_repairs(name, repairs):
    # Given a payload as printed / Then it is not JSON as it stands, and exactly these repairs make it JSON
    with pytest.raises(ValueError):
        json.loads(seed_text(name))
    text, done = repaired(name)
    assert done == repairs
    json.loads(text)


def test_marcs_accounts_as_printed_go_through_the_client_and_the_api_models():
    # Given the bank answers the guide's Marc response (repaired only as listed: its links keep no href)
    body = repaired("accounts-marc")[0].encode()
    bank = InProcessBank(answer=lambda _m, _u: (200, body))

    # When the gateway lists his accounts
    stet = _client(bank).get_accounts("KXZyspFBZ1R6NqWQdmsZhfdo1nbjK7MoI0Kr2rSi1mSCFNehAs6iLw", None)
    listed = ListAccountsResponse.from_bank("13807", mapping.accounts(stet))

    # Then every account, balance and link the guide shows is there
    assert listed.connected_psu == "MALLOW MARC"
    assert [(a.account_id, a.iban, a.name) for a in listed.accounts] == [
        ("038-CPT30019654051", "FR7613807008043001965405158", "Compte perso"),
        ("038-CPT30019654052", "FR7613807008043001965405255", "Retrait et Cheques"),
        ("038-CPT30019654053", "FR7613807008043001965405352", "Compte mensualités"),
    ]
    marc = listed.accounts[0]
    assert [(b.type, b.name, Decimal(b.amount), str(b.reference_date)) for b in marc.balances] == [
        ("VALU", "Solde en Valeur", Decimal("4321.95"), "2019-09-04"),
        ("CLBD", "Solde Comptable", Decimal("4179.95"), "2019-09-03"),
        ("OTHR", "Solde TP", Decimal("4348.95"), "None"),
    ]
    # {"templated": false} without href: the balances and transactions are available
    assert all(a.links.balances and a.links.transactions for a in listed.accounts)
    assert all((a.currency, a.usage, a.psu_status) == ("EUR", "PRIV", "Account Holder") for a in listed.accounts)


def test_tech_n_cos_accounts_before_consent_show_nothing_available():
    bank = InProcessBank(answer=lambda _m, _u: (200, repaired("accounts-tech-n-co")[0].encode()))

    listed = ListAccountsResponse.from_bank("13807", mapping.accounts(_client(bank).get_accounts("token", None)))

    (account,) = listed.accounts
    assert (account.account_id, account.iban, account.usage) == (
        "038-CPT30019654091",
        "FR7613807008043001965409135",
        "ORGA",
    )
    assert account.balances == [] and not account.links.balances and not account.links.transactions
    assert listed.connected_psu is None


def test_the_guides_consent_goes_through_the_api_model_and_the_client_body():
    # Given the guide's consent body, whose IBANs start with a space
    body = seed_json("consent-body")
    ibans = [item["iban"] for item in body["balances"]]
    assert ibans == [" FR7613807008043001965405158"]

    # When an app sends these IBANs to our API, and the client builds the bank's body from them
    request = SubmitConsentRequest(
        balances=ibans,
        transactions=[item["iban"] for item in body["transactions"]],
        psu_identity=body["psuIdentity"],
        trusted_beneficiaries=body["trustedBeneficiaries"],
    )
    sent = ConsentRequest(
        balances=request.balances,
        transactions=request.transactions,
        psu_identity=request.psu_identity,
        trusted_beneficiaries=request.trusted_beneficiaries,
    ).to_stet("1.4.0.47")

    # Then it is the guide's body with the IBAN normalised (no space: STET's IBAN pattern has none)
    normalised = {**body, "balances": [{"iban": "FR7613807008043001965405158"}]}
    normalised["transactions"] = normalised["balances"]
    assert sent == normalised


@pytest.mark.parametrize("name", ["token-response", "refresh-token-response"])
def test_the_guides_token_responses_parse(name):
    token = TokenResponse.model_validate(seed_json(name))
    assert (token.token_type, token.expires_in, token.scope) == ("Bearer", 3600, "aisp offline_access")
    assert token.refresh_token is not None
    # BPCE does not rotate: the refresh answer carries the refresh token the code exchange gave
    assert token.refresh_token.get_secret_value() == "KUZyspFBZ1R6NqWQdmsZhfdo1nbjK7MoD0Kr2rSi1mSCFNehAs6iLa"
