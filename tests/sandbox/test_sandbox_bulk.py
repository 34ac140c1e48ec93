"""The large-history persona (D0999997I0, for the pagination benchmark): 10,000 transactions, 100 pages of 100."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from sandbox.history import HISTORY_DAYS, account_history
from sandbox.personas import PERSONAS, HistoryProfile
from tests.sandbox.helpers import SandboxClient

pytestmark = pytest.mark.integration

BULK = "D0999997I0"
PSU_IP = "192.168.0.1"


def _bulk_account() -> tuple[str, HistoryProfile]:
    persona = next(p for p in PERSONAS["13807"] if p.identifier == BULK)
    (account,) = persona.accounts
    return account.resource_id, account.profile


@pytest.mark.parametrize("today", [date(2026, 11, 24), date(2027, 2, 28), date(2028, 2, 29)])
def test_the_window_always_holds_exactly_ten_thousand(today: date) -> None:
    resource_id, profile = _bulk_account()

    history = account_history(resource_id, profile, today)

    assert profile is HistoryProfile.BULK
    assert len(history) == 10_000
    assert len({entry.entry_reference for entry in history}) == 10_000
    assert {entry.credit_debit for entry in history} == {"CRDT", "DBIT"}
    assert min(entry.imputation_date for entry in history) == today - timedelta(days=HISTORY_DAYS - 1)


def test_ten_thousand_transactions_over_a_hundred_pages_of_a_hundred(client: SandboxClient) -> None:
    # Given the persona connected, its one account consented
    access = client.connect(BULK)["access_token"]
    (account,) = client.get("/accounts", access, psu_ip=PSU_IP).json()["accounts"]

    # When following _links.next from the account's transactions link to the end
    sizes: list[int] = []
    references: set[str] = set()
    href: str | None = f"/accounts/{account['resourceId']}/transactions"  # /v1 account links carry no href
    last = ""
    while href:
        page = client.get(href, access, psu_ip=PSU_IP).json()
        sizes.append(len(page["transactions"]))
        references |= {t["entryReference"] for t in page["transactions"]}
        last = page["_links"]["last"]["href"]
        href = page["_links"].get("next", {}).get("href")

    # Then 100 full pages, every transaction once
    assert sizes == [100] * 100
    assert len(references) == 10_000
    assert last.endswith("page=100")
