"""The 89C3 "4 accesses per day" rule for calls without PSU-IP-Address (RTS art. 36(5))."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from sandbox.clock import paris
from tests.sandbox.helpers import MARC, MARC_ACCOUNTS, MARC_IBANS, SandboxClient, consent_body

pytestmark = pytest.mark.integration

BALANCES = f"/accounts/{MARC_ACCOUNTS[0]}/balances"
TRANSACTIONS = f"/accounts/{MARC_ACCOUNTS[0]}/transactions"


@pytest.fixture
def marc(client: SandboxClient) -> str:
    """Marc's access token."""
    return str(client.connect(MARC)["access_token"])


def test_the_fifth_unattended_call_is_429_with_the_bpce_message(client: SandboxClient, marc: str) -> None:
    statuses = [client.get(BALANCES, marc).status_code for _ in range(5)]
    refused = client.get(BALANCES, marc)

    assert statuses == [200, 200, 200, 200, 429]
    body = refused.json()
    assert (body["status"], body["error"]) == (429, "Too Many Requests")
    assert body["message"].startswith("Limite des appels par jour dépassée (Erreur H6B-")
    assert refused.headers["X-Request-ID"]


def test_calls_with_psu_ip_address_are_not_limited(client: SandboxClient, marc: str) -> None:
    for _ in range(4):
        client.get(BALANCES, marc)

    attended = [client.get(BALANCES, marc, psu_ip="192.168.0.1").status_code for _ in range(6)]

    assert attended == [200] * 6
    assert client.get(BALANCES, marc).status_code == 429


def test_the_quota_is_per_account_and_per_method(client: SandboxClient, marc: str) -> None:
    for _ in range(4):
        client.get(BALANCES, marc)

    other_account = client.get(f"/accounts/{MARC_ACCOUNTS[1]}/balances", marc)
    other_method = client.get(TRANSACTIONS, marc)
    accounts_list = client.get("/accounts", marc)

    assert (other_account.status_code, other_method.status_code, accounts_list.status_code) == (200, 200, 200)


def test_transactions_with_or_without_dates_count_as_one_method_and_pages_are_free(
    client: SandboxClient, marc: str
) -> None:
    statuses = [
        client.get(TRANSACTIONS, marc).status_code,
        client.get(f"{TRANSACTIONS}?dateFrom=2020-01-01", marc).status_code,
        client.get(f"{TRANSACTIONS}?page=2", marc).status_code,
        client.get(f"{TRANSACTIONS}?page=3", marc).status_code,
        client.get(f"{TRANSACTIONS}?page=last", marc).status_code,
        client.get(TRANSACTIONS, marc).status_code,
        client.get(f"{TRANSACTIONS}?page=1", marc).status_code,
        client.get(TRANSACTIONS, marc).status_code,
        client.get(f"{TRANSACTIONS}?page=2", marc).status_code,
    ]

    assert statuses == [200, 200, 200, 200, 200, 200, 200, 429, 200]


def test_the_quota_resets_at_midnight_europe_paris(client: SandboxClient) -> None:
    tokens = client.connect(MARC)
    for _ in range(4):
        client.get(BALANCES, tokens["access_token"])
    now = client.sandbox.core.clock.paris_now()
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), paris())

    client.advance_clock((midnight - now).total_seconds() - 5)
    before = client.refresh(tokens["refresh_token"]).json()["access_token"]
    still_today = client.get(BALANCES, before).status_code
    client.advance_clock(10)
    tomorrow = client.get(BALANCES, before).status_code

    assert (still_today, tomorrow) == (429, 200)


def test_put_consents_is_not_counted(client: SandboxClient, marc: str) -> None:
    body = consent_body(MARC_IBANS, MARC_IBANS, psu_identity=True, trusted_beneficiaries=True)
    statuses = [client.put_consents(marc, body).status_code for _ in range(6)]

    assert statuses == [201] * 6
