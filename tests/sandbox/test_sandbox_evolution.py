"""The history evolves with the sandbox clock (``sandbox/README.md``, How the history evolves), over real HTTPS with
mTLS: a day later the day's new items are on top and yesterday's pending ones are settled or gone per their fate;
the same sandbox day lists the same transactions in every run and call; paging stays consistent."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from sandbox.history import HISTORY_DAYS, PENDING_DAYS, Fate, account_history, day_settlements
from sandbox.personas import HistoryProfile
from tests.sandbox.helpers import MARC, MARC_ACCOUNTS, SandboxClient, settlement_examples

pytestmark = pytest.mark.integration

PSU_IP = "192.168.0.1"
MARC_MAIN = MARC_ACCOUNTS[0]
PATH = f"/accounts/{MARC_MAIN}/transactions"
DAY = 86_400


def _listing(client: SandboxClient, *, version: str = "v1", query: str = "") -> tuple[list[dict[str, Any]], list[int]]:
    """Every transaction of Marc's main account (a fresh token, so that any clock move is fine), following
    ``_links.next``; and the size of each page."""
    access = client.connect(MARC)["access_token"]
    transactions: list[dict[str, Any]] = []
    sizes: list[int] = []
    href: str | None = f"{PATH}?{query}" if query else PATH
    while href:
        response = client.get(href, access, version=version, psu_ip=PSU_IP)
        assert response.status_code == 200, response.text
        page = response.json()
        transactions.extend(page["transactions"])
        sizes.append(len(page["transactions"]))
        href = page["_links"].get("next", {}).get("href") or None
    return transactions, sizes


def _by_reference(transactions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["entryReference"]: t for t in transactions}


def test_a_day_later_the_new_items_are_on_top_and_yesterdays_pending_ones_settled(client: SandboxClient) -> None:
    # Given Marc's main account read at noon of a sandbox day
    today = client.today()
    client.travel_to(today)
    before, _ = _listing(client)

    # When the clock moves one day and the account is read again
    client.advance_clock(DAY)
    after, _ = _listing(client)

    # Then the new day's transactions are on top, pending, and were not there before
    arriving = day_settlements(MARC_MAIN, HistoryProfile.RETAIL, today + timedelta(days=1))
    assert arriving
    top = after[: len(arriving)]
    assert [t["entryReference"] for t in top] == [s.pending.entry_reference for s in reversed(arriving)]
    assert {t["status"] for t in top} == {"PDNG"} and not {t["entryReference"] for t in top} & set(
        _by_reference(before)
    )
    # And each pending transaction of yesterday meets its fate: booked (same or new reference), or gone
    was, now = _by_reference(before), _by_reference(after)
    resolving = day_settlements(MARC_MAIN, HistoryProfile.RETAIL, today - timedelta(days=PENDING_DAYS - 1))
    assert resolving
    for settlement in resolving:
        assert was[settlement.pending.entry_reference]["status"] == "PDNG"
        if settlement.booked is None:
            assert settlement.pending.entry_reference not in now
            continue
        booked = now[settlement.booked.entry_reference]
        assert booked["status"] == "BOOK" and booked["bookingDate"] == settlement.booked.imputation_date.isoformat()
        if settlement.fate is not Fate.BOOKED:
            assert settlement.pending.entry_reference not in now and settlement.booked.entry_reference not in was
    # And nothing else changed but the day that aged out of the 90-day window
    aged_out = {
        t["entryReference"] for t in before if t.get("bookingDate") == str(today - timedelta(days=HISTORY_DAYS - 1))
    }
    rebooked = [s for s in resolving if s.fate is not Fate.BOOKED]
    gone = aged_out | {s.pending.entry_reference for s in rebooked}
    new = {t["entryReference"] for t in top} | {s.booked.entry_reference for s in rebooked if s.booked}
    assert aged_out and set(now) == (set(was) - gone) | new
    unchanged = set(was) - gone - {s.pending.entry_reference for s in resolving}
    assert all(now[reference] == was[reference] for reference in unchanged)


@pytest.mark.parametrize("fate", list(Fate))
def test_a_pending_transaction_meets_its_fate_the_day_it_resolves(client: SandboxClient, fate: Fate) -> None:
    # Given the next pending transaction of that fate, read (v1.4.2) on its last pending day
    example = settlement_examples(client.today())[fate]
    client.travel_to(example.resolved_on - timedelta(days=1))
    pending = _by_reference(_listing(client, version="v1.4.2")[0])[example.pending.entry_reference]
    assert pending["status"] == "PDNG" and "bookingDate" not in pending
    expected_day = date.fromisoformat(pending["expectedBookingDate"][:10])

    # When the clock moves one day
    client.advance_clock(DAY)
    now = _by_reference(_listing(client, version="v1.4.2")[0])

    # Then it is booked as its fate says, or gone
    if fate is Fate.RELEASED:
        assert example.booked is None and pending["entryReference"] not in now
        assert not [
            t
            for t in now.values()
            if (t["remittanceInformation"], t["transactionAmount"])
            == (pending["remittanceInformation"], pending["transactionAmount"])
        ]
        return
    assert example.booked is not None
    booked = now[example.booked.entry_reference]
    booked_day = date.fromisoformat(booked["bookingDate"][:10])
    assert booked["status"] == "BOOK" and "expectedBookingDate" not in booked
    assert (booked["remittanceInformation"], booked["transactionDate"], booked["creditDebitIndicator"]) == (
        pending["remittanceInformation"],
        pending["transactionDate"],
        pending["creditDebitIndicator"],
    )
    assert (booked["entryReference"] == pending["entryReference"]) is (fate is Fate.BOOKED)
    assert (pending["entryReference"] in now) is (fate is Fate.BOOKED)
    assert booked["resourceId"] == booked["entryReference"]
    if fate is Fate.REDATED:
        assert 1 <= (booked_day - expected_day).days <= 2 and booked["valueDate"] == booked_day.isoformat()
    else:
        assert booked_day == expected_day
    amounts = Decimal(booked["transactionAmount"]["amount"]), Decimal(pending["transactionAmount"]["amount"])
    if fate is Fate.REPRICED:
        assert amounts[0] != amounts[1] and abs(amounts[0] - amounts[1]) <= amounts[1] * Decimal("0.20")
    else:
        assert amounts[0] == amounts[1]


def test_a_sandbox_day_lists_the_same_transactions_in_every_run_and_call(client: SandboxClient) -> None:
    day = client.today() + timedelta(days=3)
    client.travel_to(day)
    first, _ = _listing(client)

    again, _ = _listing(client)
    client.advance_clock(DAY)
    client.advance_clock(-DAY)
    back, _ = _listing(client)
    client.reset()
    client.travel_to(day)
    next_run, _ = _listing(client)

    assert first == again == back == next_run
    assert [t["entryReference"] for t in first] == [
        e.entry_reference for e in account_history(MARC_MAIN, HistoryProfile.RETAIL, day)
    ]


def test_paging_stays_consistent_the_day_a_redated_transaction_is_booked(client: SandboxClient) -> None:
    # Given the day a pending card payment is booked one or two days later under a new reference
    example = settlement_examples(client.today())[Fate.REDATED]
    assert example.booked is not None
    client.travel_to(example.resolved_on)

    # When the whole history is read page by page, and the booking day alone with dateFrom/dateTo
    transactions, sizes = _listing(client)
    booked_day = example.booked.imputation_date
    one_day, _ = _listing(client, query=f"dateFrom={booked_day}&dateTo={booked_day + timedelta(days=1)}")

    # Then full pages of 100, each transaction once, in the rules' order; the day holds the booked one
    references = [t["entryReference"] for t in transactions]
    assert sizes[:-1] == [100] * (len(sizes) - 1) and 0 < sizes[-1] <= 100
    assert len(set(references)) == len(references)
    assert references == [
        e.entry_reference for e in account_history(MARC_MAIN, HistoryProfile.RETAIL, example.resolved_on)
    ]
    assert example.booked.entry_reference in {t["entryReference"] for t in one_day}
    assert example.pending.entry_reference not in references
    history = account_history(MARC_MAIN, HistoryProfile.RETAIL, example.resolved_on)
    assert [t["entryReference"] for t in one_day] == [
        e.entry_reference for e in history if e.imputation_date == booked_day
    ]
