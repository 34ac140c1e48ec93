"""AISP semantics: BPCE mixed consent model, personas, identity, beneficiaries, dates and paging."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from sandbox.server import SandboxConfig, start_sandbox
from sandbox.store import Settings
from tests.sandbox.helpers import (
    HUGO,
    LEA,
    MARC,
    MARC_ACCOUNTS,
    MARC_IBANS,
    PAUL,
    REDIRECT_URI,
    SOPHIE,
    TECHN,
    TECHN_ACCOUNT,
    TECHN_IBAN,
    SandboxClient,
    consent_body,
)

pytestmark = pytest.mark.integration

PSU_IP = "192.168.0.1"


def _today(client: SandboxClient) -> date:
    return client.sandbox.core.clock.today()


# --- consents ------------------------------------------------------------------------------------------------


def test_put_consents_replaces_the_previous_consent(client: SandboxClient) -> None:
    # Given Marc (all three accounts consented) narrowing his consent to one account's balances
    access = client.connect(MARC)["access_token"]
    narrowed = consent_body((MARC_IBANS[1],), ())

    assert client.put_consents(access, narrowed, psu_ip=PSU_IP).status_code == 201

    # Then the others lose balances and transactions at once, and identity is gone
    accounts = {a["resourceId"]: a for a in client.get("/accounts", access, psu_ip=PSU_IP).json()["accounts"]}
    assert "balances" not in accounts[MARC_ACCOUNTS[0]]
    assert accounts[MARC_ACCOUNTS[0]]["_links"] == {}
    assert set(accounts[MARC_ACCOUNTS[1]]["_links"]) == {"balances"}
    assert client.get(f"/accounts/{MARC_ACCOUNTS[0]}/balances", access, psu_ip=PSU_IP).status_code == 403
    assert client.get(f"/accounts/{MARC_ACCOUNTS[1]}/balances", access, psu_ip=PSU_IP).status_code == 200
    assert client.get(f"/accounts/{MARC_ACCOUNTS[1]}/transactions", access, psu_ip=PSU_IP).status_code == 403
    assert client.get("/end-user-identity", access, psu_ip=PSU_IP).status_code == 403
    assert "connectedPsu" not in client.get("/accounts", access, psu_ip=PSU_IP).json()


def test_the_seed_consent_body_with_a_leading_space_in_the_iban_is_accepted(client: SandboxClient) -> None:
    access = client.connect(TECHN)["access_token"]
    body = consent_body((" " + TECHN_IBAN,), (" " + TECHN_IBAN,), psu_identity=True, trusted_beneficiaries=True)

    assert client.put_consents(access, body).status_code == 201
    assert client.get(f"/accounts/{TECHN_ACCOUNT}/balances", access).status_code == 200


def test_a_consent_survives_a_new_token(client: SandboxClient) -> None:
    access = client.connect(TECHN)["access_token"]
    client.put_consents(access, consent_body((TECHN_IBAN,), (TECHN_IBAN,)))

    again = client.connect(TECHN)["access_token"]

    assert client.get(f"/accounts/{TECHN_ACCOUNT}/balances", again).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (consent_body(("FR7630004000031234567890143",)), "does not belong"),
        (consent_body((), (MARC_IBANS[0],)), "does not belong"),
        ({"balances": [], "transactions": []}, "Missing field"),
        ({**consent_body(), "psuIdentity": "yes"}, "booleans"),
        ({**consent_body(), "balances": {"iban": TECHN_IBAN}}, "list"),
        ({**consent_body(), "balances": [{"bban": "x"}]}, "iban"),
        ([], "Access object"),
    ],
)
def test_bad_consents_are_400(client: SandboxClient, body: object, message: str) -> None:
    access = client.connect(TECHN)["access_token"]

    response = client.call("PUT", "/consents", access, body=json.dumps(body).encode())

    assert response.status_code == 400
    assert message in response.json()["message"]
    assert client.get(f"/accounts/{TECHN_ACCOUNT}/balances", access).status_code == 403  # nothing stored


def test_a_body_that_is_not_json_is_400(client: SandboxClient) -> None:
    access = client.connect(TECHN)["access_token"]

    assert client.call("PUT", "/consents", access, body=b"{not json").status_code == 400


def test_balances_and_transactions_of_a_non_consented_account_are_403(client: SandboxClient) -> None:
    access = client.connect(TECHN)["access_token"]

    balances = client.get(f"/accounts/{TECHN_ACCOUNT}/balances", access)
    transactions = client.get(f"/accounts/{TECHN_ACCOUNT}/transactions", access)

    assert (balances.status_code, transactions.status_code) == (403, 403)
    assert balances.json()["error"] == "Forbidden"


def test_an_account_of_somebody_else_is_404(client: SandboxClient) -> None:
    access = client.connect(TECHN)["access_token"]

    assert client.get(f"/accounts/{MARC_ACCOUNTS[0]}/balances", access).status_code == 404


# --- identity and beneficiaries ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/end-user-identity", "/endUserIdentity"])
def test_identity_needs_psu_identity_in_the_consent(client: SandboxClient, path: str) -> None:
    access = client.connect(TECHN)["access_token"]

    before = client.get(path, access, version="v1.4.2")
    client.put_consents(access, consent_body(psu_identity=True))
    after = client.get(path, access, version="v1.4.2")

    assert before.status_code == 403
    assert after.status_code == 200
    assert after.json()["connectedPsu"] == "TECH-N CO"
    assert after.json()["_links"]["self"]["href"] == "/13807/stet/psd2/v1.4.2/end-user-identity"


@pytest.mark.parametrize("path", ["/trusted-beneficiaries", "/trustedBeneficiaries"])
def test_trusted_beneficiaries_under_both_spellings(client: SandboxClient, path: str) -> None:
    access = client.connect(MARC)["access_token"]

    response = client.get(path, access)

    assert response.status_code == 200
    beneficiaries = response.json()["beneficiaries"]
    assert [b["creditor"]["name"] for b in beneficiaries] == ["MALLOW CLAIRE", "SCI LES TILLEULS"]
    assert all(b["isTrusted"] for b in beneficiaries)


def test_beneficiaries_need_the_flag_and_none_is_204(client: SandboxClient) -> None:
    access = client.connect(TECHN)["access_token"]

    before = client.get("/trusted-beneficiaries", access)
    client.put_consents(access, consent_body(trusted_beneficiaries=True))
    after = client.get("/trusted-beneficiaries", access)

    assert before.status_code == 403
    assert after.status_code == 204
    assert after.content == b""


def test_a_caisse_d_epargne_has_no_identity_nor_beneficiaries(client: SandboxClient) -> None:
    access = client.connect(HUGO, bank="17515")["access_token"]

    identity = client.get("/end-user-identity", access, bank="17515", version="v1.4.2")
    beneficiaries = client.get("/trusted-beneficiaries", access, bank="17515", version="v1.4.2")

    assert (identity.status_code, identity.json()["message"]) == (501, "NIMP")
    assert (beneficiaries.status_code, beneficiaries.json()["message"]) == (501, "NIMP")


# --- personas ------------------------------------------------------------------------------------------------


def test_no_eligible_account_is_404_naac(client: SandboxClient) -> None:
    access = client.connect(PAUL)["access_token"]

    response = client.get("/accounts", access)

    assert response.status_code == 404
    assert response.json()["message"] == "NAAC"


def test_the_deferred_debit_card_persona(client: SandboxClient) -> None:
    access = client.connect(SOPHIE)["access_token"]

    accounts = client.get("/accounts", access, psu_ip=PSU_IP).json()["accounts"]
    cash, card = accounts
    # /v1 links as the guide prints them ({"templated": false}, no href): the URL is built from the resource id
    assert card["_links"] == {"balances": {"templated": False}, "transactions": {"templated": False}}
    card_id = quote(card["resourceId"], safe="")
    card_balances = client.get(f"/accounts/{card_id}/balances", access, psu_ip=PSU_IP).json()["balances"]
    card_page = client.get(f"/accounts/{card_id}/transactions", access, psu_ip=PSU_IP).json()

    assert card["cashAccountType"] == "CARD"
    assert card["linkedAccount"] == cash["resourceId"]
    assert card["accountId"]["other"]["schemeName"] == "CPAN"
    assert "iban" not in card["accountId"]
    assert [b["balanceType"] for b in card_balances] == ["OTHR"]
    assert card_balances[0]["balanceAmount"]["amount"].startswith("-")
    assert all(t["remittanceInformation"][0].startswith(("CB ", "AVOIR CB ")) for t in card_page["transactions"])


def test_a_card_is_consented_by_its_pan(client: SandboxClient) -> None:
    access = client.connect(SOPHIE)["access_token"]
    card = client.get("/accounts", access).json()["accounts"][1]
    pan = card["accountId"]["other"]["identification"]

    body = {"balances": [{"other": {"identification": pan, "schemeName": "CPAN"}}], "transactions": []}
    stored = client.put_consents(access, {**body, "trustedBeneficiaries": False, "psuIdentity": False})

    assert stored.status_code == 201
    assert client.get(f"/accounts/{card['resourceId']}/balances", access, psu_ip=PSU_IP).status_code == 200
    assert client.get(f"/accounts/{card['resourceId']}/transactions", access, psu_ip=PSU_IP).status_code == 403


def test_other_banks_have_their_own_personas_and_ibans(client: SandboxClient) -> None:
    lea = client.connect(LEA, bank="10207")["access_token"]
    hugo = client.connect(HUGO, bank="17515")["access_token"]

    lea_accounts = client.get("/accounts", lea, bank="10207", version="v1.4.2").json()["accounts"]
    hugo_accounts = client.get("/accounts", hugo, bank="17515", version="v1.4.2").json()["accounts"]

    assert [a["accountId"]["iban"][4:9] for a in lea_accounts] == ["10207", "10207"]
    assert [a["bicFi"] for a in lea_accounts] == ["CCBPFRPPMTG", "CCBPFRPPMTG"]
    assert hugo_accounts[0]["accountId"]["iban"][4:9] == "17515"
    assert hugo_accounts[0]["balances"][0]["name"].startswith("Solde comptable au ")


# --- transactions filters and paging -------------------------------------------------------------------------


def test_date_from_is_inclusive_and_date_to_exclusive(client: SandboxClient) -> None:
    access = client.connect(MARC)["access_token"]
    day = _today(client) - timedelta(days=10)
    path = f"/accounts/{MARC_ACCOUNTS[0]}/transactions"

    one_day = client.get(f"{path}?dateFrom={day}&dateTo={day + timedelta(days=1)}", access, psu_ip=PSU_IP).json()
    empty = client.get(f"{path}?dateFrom={day}&dateTo={day}", access, psu_ip=PSU_IP).json()

    assert one_day["transactions"]
    assert {t["bookingDate"] for t in one_day["transactions"]} == {day.isoformat()}
    assert empty["transactions"] == []
    assert "next" not in empty["_links"]
    assert one_day["_links"]["self"]["href"].endswith(f"dateFrom={day}&dateTo={day + timedelta(days=1)}&page=1")


def test_date_params_accept_iso_date_times(client: SandboxClient) -> None:
    access = client.connect(MARC)["access_token"]
    day = _today(client) - timedelta(days=5)
    path = f"/accounts/{MARC_ACCOUNTS[0]}/transactions"

    by_date = client.get(f"{path}?dateFrom={day}", access, psu_ip=PSU_IP).json()
    by_instant = client.get(f"{path}?dateFrom={day}T12:00:00Z", access, psu_ip=PSU_IP).json()

    assert by_date["transactions"] == by_instant["transactions"]


@pytest.mark.parametrize("query", ["dateFrom=yesterday", "dateTo=2026-13-01", "page=0", "page=99", "page=two"])
def test_bad_transaction_queries_are_400(client: SandboxClient, query: str) -> None:
    access = client.connect(MARC)["access_token"]

    response = client.get(f"/accounts/{MARC_ACCOUNTS[0]}/transactions?{query}", access, psu_ip=PSU_IP)

    assert response.status_code == 400
    assert response.json()["status"] == 400


def test_date_from_after_date_to_is_400(client: SandboxClient) -> None:
    access = client.connect(MARC)["access_token"]

    response = client.get(
        f"/accounts/{MARC_ACCOUNTS[0]}/transactions?dateFrom=2026-02-02&dateTo=2026-02-01", access, psu_ip=PSU_IP
    )

    assert response.status_code == 400


def test_page_first_and_last_keywords(client: SandboxClient) -> None:
    access = client.connect(MARC)["access_token"]
    path = f"/accounts/{MARC_ACCOUNTS[0]}/transactions"

    first = client.get(f"{path}?page=first", access, psu_ip=PSU_IP).json()
    last = client.get(f"{path}?page=last", access, psu_ip=PSU_IP).json()

    assert first["_links"]["self"]["href"].endswith("page=1")
    assert last["_links"]["self"]["href"] == last["_links"]["last"]["href"]
    assert "next" not in last["_links"]


def test_a_page_size_setting_changes_the_pages(certs_dir: Path) -> None:
    config = SandboxConfig(
        port=0, screens_port=0, certs_dir=certs_dir, redirect_uris=(REDIRECT_URI,), settings=Settings(page_size=250)
    )
    with start_sandbox(config) as other, SandboxClient(other) as tpp:
        access = tpp.connect(MARC)["access_token"]
        page = tpp.get(f"/accounts/{MARC_ACCOUNTS[0]}/transactions", access, psu_ip=PSU_IP).json()

    assert len(page["transactions"]) == 250
    assert page["_links"]["last"]["href"].endswith("page=2")


def test_a_caisse_d_epargne_returns_one_capped_list_without_paging(client: SandboxClient) -> None:
    access = client.connect(HUGO, bank="17515")["access_token"]
    account = client.get("/accounts", access, bank="17515", version="v1.4.2").json()["accounts"][0]

    page = client.get(account["_links"]["transactions"]["href"], access, bank="17515", psu_ip=PSU_IP).json()

    assert 300 <= len(page["transactions"]) <= 500
    assert set(page["_links"]) == {"self", "parent-list", "balances"}


def test_wrong_method_is_405(client: SandboxClient) -> None:
    access = client.connect(MARC)["access_token"]

    response = client.call("DELETE", "/accounts", access)

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"


def test_history_is_deterministic_between_runs(client: SandboxClient) -> None:
    access = client.connect(MARC)["access_token"]
    path = f"/accounts/{MARC_ACCOUNTS[2]}/transactions?page=2"

    first = client.get(path, access, psu_ip=PSU_IP).json()
    client.reset()
    again = client.get(path, client.connect(MARC)["access_token"], psu_ip=PSU_IP).json()

    assert first == again
