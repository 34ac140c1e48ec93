"""The 89C3 guide's sandbox journey, step by step, over real HTTPS with mTLS (screens over the HTTP listener)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.sandbox.helpers import (
    CLIENT_ID,
    MARC,
    MARC_ACCOUNTS,
    MARC_IBANS,
    OTP,
    REDIRECT_URI,
    TECHN,
    TECHN_ACCOUNT,
    TECHN_IBAN,
    SandboxClient,
    consent_body,
    flow_id,
    query_of,
)

pytestmark = pytest.mark.integration

# The guide's Tech-N Co account before any consent ("_links": {} and no balances), field for field.
TECHN_BEFORE_CONSENT = {
    "cashAccountType": "CACC",
    "accountId": {"iban": TECHN_IBAN},
    "resourceId": TECHN_ACCOUNT,
    "product": "COMPTE COURANT",
    "_links": {},
    "usage": "ORGA",
    "psuStatus": "Account Holder",
    "name": "Tech-N Co",
    "bicFi": "CCBPFRPPNAN",
    "currency": "EUR",
    "details": "COMPTE COURANT",
}

# The guide's Marc accounts: (iban, resourceId, name, VALU, CLBD, OTHR "Solde TP").
MARC_SEED = [
    (MARC_IBANS[0], MARC_ACCOUNTS[0], "Compte perso", "4321.95", "4179.95", "4348.95"),
    (MARC_IBANS[1], MARC_ACCOUNTS[1], "Retrait et Cheques", "459.56", "459.56", "459.56"),
    (MARC_IBANS[2], MARC_ACCOUNTS[2], "Compte mensualités", "2165.50", "2165.50", "2165.50"),
]


def _all_pages(client: SandboxClient, token: str, first: str, *, version: str = "v1") -> list[dict[str, Any]]:
    pages = [client.get(first, token, version=version, psu_ip="192.168.0.1")]
    while True:
        assert pages[-1].status_code == 200, pages[-1].text
        next_link = pages[-1].json()["_links"].get("next")
        if next_link is None or not next_link["href"]:
            return [page.json() for page in pages]
        pages.append(client.get(next_link["href"], token, psu_ip="192.168.0.1"))


def _screens_then_token(client: SandboxClient) -> dict[str, Any]:
    """Steps 1 to 5 of the guide, each checked; returns the token response."""
    # Step 1: GET /authorize shows the identification screen
    page = client.authorize(state="xyz-42")
    assert page.status_code == 200
    assert "name='identifier'" in page.text
    assert "no-store" in page.headers["Cache-Control"]
    flow = flow_id(page.text)

    # Step 2: the remote banking identifier leads to the SMS screen
    page = client.screen(flow, identifier=TECHN)
    assert page.status_code == 200
    assert "name='otp'" in page.text

    # Step 3: the SMS code leads to the decision screen
    page = client.screen(flow, otp=OTP)
    assert page.status_code == 200
    assert "value='accept'" in page.text
    assert "value='refuse'" in page.text

    # Step 4: accepting redirects to the registered URI with a code and the same state
    accepted = client.screen(flow, decision="accept")
    assert accepted.status_code == 302
    location = accepted.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    params = query_of(location)
    assert params["state"] == "xyz-42"
    assert set(params) == {"code", "state"}

    # Step 5: the code buys the seed's token response
    tokens = client.exchange(params["code"])
    assert tokens.status_code == 200
    body: dict[str, Any] = tokens.json()
    assert list(body) == ["access_token", "token_type", "expires_in", "scope", "refresh_token"]
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "aisp offline_access"
    assert tokens.headers["Cache-Control"] == "no-store"
    return body


def test_tech_n_co_journey_screens_token_accounts_consent_balances_transactions_refresh(client: SandboxClient) -> None:
    body = _screens_then_token(client)
    access = body["access_token"]

    # Step 6: GET /accounts before consent: the guide's account, no balances, no links, X-Request-ID echoed
    accounts = client.get("/accounts", access, psu_ip="192.168.0.1", headers={"X-Request-ID": "id-12345678901111211"})
    assert accounts.status_code == 200
    assert accounts.headers["X-Request-ID"] == "id-12345678901111211"
    assert accounts.json()["accounts"] == [TECHN_BEFORE_CONSENT]
    assert "connectedPsu" not in accounts.json()
    assert client.get(f"/accounts/{TECHN_ACCOUNT}/balances", access, psu_ip="192.168.0.1").status_code == 403

    # Step 7: PUT /consents answers 201 with no body
    consent = client.put_consents(
        access, consent_body((TECHN_IBAN,), (TECHN_IBAN,), psu_identity=True), psu_ip="192.168.0.1"
    )
    assert consent.status_code == 201
    assert consent.content == b""
    assert consent.headers["X-Request-ID"]

    # Step 8: GET /accounts now embeds balances and links; balances answer
    account = client.get("/accounts", access, psu_ip="192.168.0.1").json()["accounts"][0]
    assert [b["balanceType"] for b in account["balances"]] == ["VALU", "CLBD", "OTHR"]
    assert account["_links"] == {"balances": {"templated": False}, "transactions": {"templated": False}}
    balances = client.get(f"/accounts/{TECHN_ACCOUNT}/balances", access, psu_ip="192.168.0.1")
    assert balances.status_code == 200
    assert balances.json()["balances"] == account["balances"]

    # Step 9: transactions, every page followed through _links.next
    pages = _all_pages(client, access, f"/accounts/{TECHN_ACCOUNT}/transactions")
    assert len(pages) >= 4
    transactions = [t for p in pages for t in p["transactions"]]
    assert all(len(p["transactions"]) == 100 for p in pages[:-1])
    assert 0 < len(pages[-1]["transactions"]) <= 100
    assert len(transactions) >= 300
    assert len({t["entryReference"] for t in transactions}) == len(transactions)

    # Step 10: refresh gives a new access token, keeps the refresh token, revokes the old access token
    refreshed = client.refresh(body["refresh_token"])
    assert refreshed.status_code == 200
    assert refreshed.json()["refresh_token"] == body["refresh_token"]
    assert refreshed.json()["access_token"] != access
    assert client.get("/accounts", access, psu_ip="192.168.0.1").status_code == 401
    assert client.get("/accounts", refreshed.json()["access_token"], psu_ip="192.168.0.1").status_code == 200


def test_marc_accounts_show_the_seed_balances_and_connected_psu(client: SandboxClient) -> None:
    # Given Marc, whose consent was already given (the guide's second response)
    access = client.connect(MARC)["access_token"]

    # When listing his accounts on /v1
    body = client.get("/accounts", access, psu_ip="192.168.0.1").json()

    # Then the guide's three accounts, balances and connectedPsu
    assert body["connectedPsu"] == "MALLOW MARC"
    assert body["_links"] == {"last": {}, "self": {}, "first": {}}
    seen = []
    for account in body["accounts"]:
        amounts = {b["balanceType"]: (b["name"], b["balanceAmount"]) for b in account["balances"]}
        seen.append(
            (
                account["accountId"]["iban"],
                account["resourceId"],
                account["name"],
                amounts["VALU"][1]["amount"],
                amounts["CLBD"][1]["amount"],
                amounts["OTHR"][1]["amount"],
            )
        )
        assert {name for name, _ in amounts.values()} == {"Solde en Valeur", "Solde Comptable", "Solde TP"}
        assert all(amount["currency"] == "EUR" for _, amount in amounts.values())
        assert account["product"] == account["details"] == "COMPTE CHEQUE"
        assert (account["cashAccountType"], account["usage"], account["bicFi"]) == ("CACC", "PRIV", "CCBPFRPPNAN")
        assert account["_links"] == {"balances": {"templated": False}, "transactions": {"templated": False}}
    assert seen == MARC_SEED


def test_marc_transactions_across_every_page_add_up(client: SandboxClient) -> None:
    # Given Marc's first account and its whole history in pages of 100
    access = client.connect(MARC)["access_token"]
    pages = _all_pages(client, access, f"/accounts/{MARC_ACCOUNTS[0]}/transactions")
    last = len(pages)

    # Then the paging links are consistent on every page
    for number, page in enumerate(pages, start=1):
        links = page["_links"]
        assert links["self"]["href"].endswith(f"page={number}")
        assert links["first"]["href"].endswith("page=1")
        assert links["last"]["href"].endswith(f"page={last}")
        assert ("next" in links) == (number < last)
        assert ("prev" in links) == ("previous" in links) == (number > 1)
        assert links["parent-list"]["href"] == "/13807/stet/psd2/v1/accounts"

    # And the totals of the pages equal the totals of the list fetched by date windows
    transactions = [t for p in pages for t in p["transactions"]]
    credit = sum(Decimal(t["transactionAmount"]["amount"]) for t in transactions if t["creditDebitIndicator"] == "CRDT")
    debit = sum(Decimal(t["transactionAmount"]["amount"]) for t in transactions if t["creditDebitIndicator"] == "DBIT")
    assert credit > 0
    assert debit > 0
    statuses = {t["status"] for t in transactions}
    assert statuses == {"BOOK", "PDNG"}
    booked_dates = [t["bookingDate"] for t in transactions if t["status"] == "BOOK"]
    assert booked_dates == sorted(booked_dates, reverse=True)
    assert all("bookingDate" not in t for t in transactions if t["status"] == "PDNG")

    split = booked_dates[len(booked_dates) // 2]
    older = _all_pages(client, access, f"/accounts/{MARC_ACCOUNTS[0]}/transactions?dateTo={split}")
    newer = _all_pages(client, access, f"/accounts/{MARC_ACCOUNTS[0]}/transactions?dateFrom={split}")
    older_ids = [t["entryReference"] for p in older for t in p["transactions"]]
    newer_ids = [t["entryReference"] for p in newer for t in p["transactions"]]
    assert not set(older_ids) & set(newer_ids)
    assert sorted(older_ids + newer_ids) == sorted(t["entryReference"] for t in transactions)
    assert all(t["bookingDate"] < split for p in older for t in p["transactions"])


def test_the_journey_on_v1_4_2_uses_the_1_4_2_shapes(client: SandboxClient) -> None:
    # Given Marc on the STET 1.4.2 API
    access = client.connect(MARC)["access_token"]

    # When reading accounts, identity and a page of transactions
    accounts = client.get("/accounts", access, version="v1.4.2", psu_ip="192.168.0.1").json()
    identity = client.get("/end-user-identity", access, version="v1.4.2", psu_ip="192.168.0.1").json()
    page = client.get(f"/accounts/{MARC_ACCOUNTS[0]}/transactions?page=last", access, version="v1.4.2").json()

    # Then identity has moved off /accounts, account ids carry a currency, remittance is an object,
    # booked dates use BPCE's offset form and the last page's next is an empty href
    assert "connectedPsu" not in accounts
    assert accounts["_links"]["endUserIdentity"]["href"] == "/13807/stet/psd2/v1.4.2/end-user-identity"
    assert accounts["accounts"][0]["accountId"] == {"iban": MARC_IBANS[0], "currency": "EUR"}
    assert identity["connectedPsu"] == "MALLOW MARC"
    assert (identity["connectedPsuFirstName"], identity["connectedPsuLastName"]) == ("Marc", "MALLOW")
    assert page["_links"]["next"] == {"href": ""}
    booked = next(t for t in page["transactions"] if t["status"] == "BOOK")
    assert isinstance(booked["remittanceInformation"]["unstructured"], list)
    assert booked["bookingDate"][10:] in ("T00:00:00+0100", "T00:00:00+0200")


def test_client_id_in_the_token_form_is_the_registered_one(client: SandboxClient) -> None:
    # The seed sends client_id in the token form; it is the client certificate's organizationIdentifier
    code = client.login(MARC)
    response = client.api.post(
        client.token_endpoint(),
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "client_id": CLIENT_ID},
        timeout=5,
    )
    assert response.status_code == 200
