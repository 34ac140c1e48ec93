"""How the sandbox's history evolves with its clock (``sandbox/README.md``, How the history evolves), checked on the
generator alone, without a server: the fates and their shares, exactly what one day of the clock changes, and that
the gateway's sync diff reads each fate as ``docs/sync.md`` says."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest

from aisp.logic.sync.diff import diff_account, transaction_ids
from aisp.models.bank import BankTransaction
from aisp.models.sync import ChangeKind, SyncedTransaction
from aisp.stet import mapping
from aisp.stet.schemas import Transaction
from sandbox.history import (
    CARD_FATES,
    HISTORY_DAYS,
    MAX_REDATE_DAYS,
    PENDING_DAYS,
    Entry,
    Fate,
    Settlement,
    account_history,
    day_settlements,
)
from sandbox.personas import HistoryProfile
from sandbox.stet import ApiVersion, transaction_json
from tests.sandbox.helpers import MARC_ACCOUNTS, account_profile, settlement_examples

MARC_MAIN = MARC_ACCOUNTS[0]
SOPHIE_CARD = "038-CB497010XXXXXX4242"
BULK = "038-CPT30019654099"
START = date(2026, 11, 24)
ACCOUNTS = (MARC_MAIN, SOPHIE_CARD, "038-CPT30019654091", BULK)


def _settlements(resource_id: str, days: int, start: date = START) -> list[Settlement]:
    profile = account_profile(resource_id)
    return [s for k in range(days) for s in day_settlements(resource_id, profile, start + timedelta(days=k))]


def _is_card_payment(entry: Entry) -> bool:
    return entry.remittance[0].startswith("CB ")


def test_card_payments_meet_each_fate_in_its_documented_share() -> None:
    settlements = _settlements(SOPHIE_CARD, 3_000)
    card = [s for s in settlements if _is_card_payment(s.pending)]

    shares = Counter(s.fate for s in card)

    assert sum(share for _, share in CARD_FATES) == 100
    assert len(card) > 10_000
    for fate, share in CARD_FATES:
        assert abs(100 * shares[fate] / len(card) - share) < 1.5, (fate, shares)


@pytest.mark.parametrize("resource_id", [MARC_MAIN, "038-CPT30019654091", BULK])
def test_every_other_transaction_is_booked_under_its_own_reference(resource_id: str) -> None:
    others = [s for s in _settlements(resource_id, 400) if not _is_card_payment(s.pending)]

    assert others
    assert {s.fate for s in others} == {Fate.BOOKED}
    assert all(s.booked == replace(s.pending, pending=False) for s in others)


def test_each_fate_books_as_its_rule_says() -> None:
    by_fate: dict[Fate, list[Settlement]] = {}
    for settlement in _settlements(MARC_MAIN, 365):
        by_fate.setdefault(settlement.fate, []).append(settlement)

    assert set(by_fate) == set(Fate)
    for fate, settlements in by_fate.items():
        for s in settlements:
            pending, booked = s.pending, s.booked
            assert pending.pending and s.resolved_on == pending.imputation_date + timedelta(days=PENDING_DAYS)
            if fate is Fate.RELEASED:
                assert booked is None
                continue
            assert booked is not None and not booked.pending
            assert (booked.remittance, booked.credit_debit) == (pending.remittance, pending.credit_debit)
            assert booked.transaction_date == pending.transaction_date
            same_reference = booked.entry_reference == pending.entry_reference
            assert same_reference is (fate is Fate.BOOKED)
            lag = (booked.imputation_date - pending.imputation_date).days
            assert lag == 0 or (
                fate is Fate.REDATED and 1 <= lag <= MAX_REDATE_DAYS and booked.value_date == booked.imputation_date
            )
            same_amount = booked.amount == pending.amount
            assert same_amount is not (fate is Fate.REPRICED)
            change = abs(Decimal(booked.amount) - Decimal(pending.amount)) / Decimal(pending.amount)
            assert change <= Decimal("0.20")
    redated = {(s.booked.imputation_date - s.pending.imputation_date).days for s in by_fate[Fate.REDATED] if s.booked}
    assert redated == {1, 2}
    repriced = [Decimal(s.booked.amount) - Decimal(s.pending.amount) for s in by_fate[Fate.REPRICED] if s.booked]
    assert any(d > 0 for d in repriced) and any(d < 0 for d in repriced)  # tips, and conversions both ways


def test_a_booked_reference_is_never_another_transactions() -> None:
    settlements = _settlements(MARC_MAIN, 365)
    pending = [s.pending.entry_reference for s in settlements]
    new = [s.booked.entry_reference for s in settlements if s.booked and s.fate is not Fate.BOOKED]

    assert len(set(pending)) == len(pending)
    assert len(set(new)) == len(new) > 0
    assert not set(pending) & set(new)


@pytest.mark.parametrize("resource_id", ACCOUNTS)
@pytest.mark.parametrize("today", [START + timedelta(days=k) for k in range(0, 120, 9)])
def test_one_day_of_clock_changes_exactly_what_the_rules_say(resource_id: str, today: date) -> None:
    profile = account_profile(resource_id)
    tomorrow = today + timedelta(days=1)
    before, after = account_history(resource_id, profile, today), account_history(resource_id, profile, tomorrow)

    resolving = day_settlements(resource_id, profile, today - timedelta(days=PENDING_DAYS - 1))
    arriving = day_settlements(resource_id, profile, tomorrow)
    aged_out = {e for e in before if e.imputation_date == today - timedelta(days=HISTORY_DAYS - 1)}
    expected = (
        (set(before) - aged_out - {s.pending for s in resolving})
        | {s.booked for s in resolving if s.booked is not None}
        | {s.pending for s in arriving}
    )

    assert set(after) == expected
    assert len(after) == len(set(after))
    assert list(after[: len(arriving)]) == [s.pending for s in reversed(arriving)]  # the new ones at the top
    assert [e.imputation_date for e in after] == sorted((e.imputation_date for e in after), reverse=True)
    assert {e.pending for e in after if e.imputation_date < tomorrow - timedelta(days=1)} == {False}


def test_the_large_history_keeps_ten_thousand_as_its_days_evolve() -> None:
    profile = account_profile(BULK)

    sizes = {len(account_history(BULK, profile, START + timedelta(days=k))) for k in range(30)}

    assert profile is HistoryProfile.BULK
    assert sizes == {10_000}


@pytest.mark.parametrize("resource_id", ACCOUNTS)
def test_the_history_is_a_pure_function_of_account_and_day(resource_id: str) -> None:
    profile = account_profile(resource_id)
    for day in (START, START + timedelta(days=40), date(2028, 2, 29)):
        assert account_history.__wrapped__(resource_id, profile, day) == account_history(resource_id, profile, day)
        assert day_settlements.__wrapped__(resource_id, profile, day) == day_settlements(resource_id, profile, day)


def test_settlement_examples_give_one_pending_transaction_of_each_fate() -> None:
    examples = settlement_examples(START)

    assert set(examples) == set(Fate)
    for fate, example in examples.items():
        assert example.fate is fate and example.resolved_on > START
        listed_while_pending = account_history(
            MARC_MAIN, HistoryProfile.RETAIL, example.resolved_on - timedelta(days=1)
        )
        listed_after = account_history(MARC_MAIN, HistoryProfile.RETAIL, example.resolved_on)
        assert example.pending in listed_while_pending and example.pending not in listed_after
        assert example.booked is None or example.booked in listed_after


# --- the gateway's sync diff reads each fate --------------------------------------------------------------------


def _bank_listing(today: date) -> list[BankTransaction]:
    """Marc's main account on ``today`` as the gateway's STET client reads it (v1.4.2 wire -> domain)."""
    return [
        mapping.transaction(
            Transaction.model_validate(transaction_json(entry, version=ApiVersion.V1_4_2, currency="EUR")),
            bank_code="13807",
        )
        for entry in account_history(MARC_MAIN, HistoryProfile.RETAIL, today)
    ]


@pytest.mark.parametrize("fate", list(Fate))
def test_the_gateway_sync_diff_reads_each_fate(fate: Fate) -> None:
    example = settlement_examples(START)[fate]
    first, then = example.resolved_on - timedelta(days=1), example.resolved_on
    stored = {
        change.transaction_id: change.synced
        for change in diff_account(MARC_MAIN, {}, _bank_listing(first), window_from=None)
        if isinstance(change.synced, SyncedTransaction)
    }

    changes = diff_account(MARC_MAIN, stored, _bank_listing(then), window_from=then - timedelta(days=HISTORY_DAYS - 1))

    (pending_id,) = transaction_ids(MARC_MAIN, [_one(first, example.pending)])
    kinds = {change.kind for change in changes if change.transaction_id == pending_id}
    settling = [c for c in changes if c.synced is not None and c.synced.pending_transaction_id == pending_id]
    if fate is Fate.BOOKED:
        assert kinds == {ChangeKind.MODIFIED} and not settling
    elif fate is Fate.RELEASED:
        assert kinds == {ChangeKind.REMOVED} and not settling
    else:
        assert kinds == {ChangeKind.REMOVED}
        (added,) = settling
        assert example.booked is not None
        assert added.kind is ChangeKind.ADDED and added.synced is not None
        assert added.synced.transaction.entry_reference == example.booked.entry_reference


def _one(today: date, entry: Entry) -> BankTransaction:
    (found,) = [t for t in _bank_listing(today) if t.entry_reference == entry.entry_reference]
    return found
