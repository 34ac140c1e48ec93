"""The sync's diff of one account (``aisp.logic.sync.diff``): stable opaque ids, added / modified / removed, a pending
transaction settled by a booked one reported as removed + added with ``pending_transaction_id``, a re-delivered one
never added twice, and history that ages out never removed."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from aisp.logic.sync.diff import diff_account, transaction_ids
from aisp.models.bank import BankTransaction
from aisp.models.sync import ChangeKind, SyncedTransaction

ACCOUNT = "038-CPT30019654051"
TODAY = date(2026, 12, 6)


def tx(
    bank_id: str | None,
    amount: str = "-12.50",
    *,
    status: str = "booked",
    day: date = date(2026, 12, 4),
    remittance: tuple[str, ...] = ("CB CARREFOUR NANTES",),
) -> BankTransaction:
    pending = status == "pending"
    return BankTransaction(
        id=bank_id,
        entry_reference=bank_id,
        amount=Decimal(amount),
        currency="EUR",
        credit_debit="debit" if amount.startswith("-") else "credit",
        status=status,  # type: ignore[arg-type]
        booking_date=None if pending else day,
        value_date=None if pending else day,
        transaction_date=day,
        remittance=remittance,
    )


def stored(*transactions: BankTransaction) -> dict[str, SyncedTransaction]:
    ids = transaction_ids(ACCOUNT, transactions)
    return {
        transaction_id: SyncedTransaction(transaction_id=transaction_id, account_id=ACCOUNT, transaction=transaction)
        for transaction_id, transaction in zip(ids, transactions, strict=True)
    }


def kinds(changes):
    return sorted((change.kind.value, change.transaction_id) for change in changes)


def test_ids_are_opaque_stable_and_scoped_to_the_account():
    listing = [tx("TX00001"), tx("TX00002")]

    first, again = transaction_ids(ACCOUNT, listing), transaction_ids(ACCOUNT, list(reversed(listing)))

    assert first == list(reversed(again))  # the bank's id decides, not the position
    assert all(i.startswith("tx_") and "TX0000" not in i for i in first)
    assert len(set(first)) == 2
    assert transaction_ids("another-account", listing) != first


def test_without_a_bank_id_identical_transactions_stay_distinct_and_stable():
    coffee = tx(None, "-2.10", remittance=("CB CAFE DU PORT",))
    listing = [coffee, coffee, tx(None, "-4.20", remittance=("CB CAFE DU PORT",))]

    ids = transaction_ids(ACCOUNT, listing)

    assert len(set(ids)) == 3
    assert transaction_ids(ACCOUNT, listing) == ids


def test_the_first_sync_adds_everything():
    listing = [tx("TX00001"), tx("TX00002", "1500.00", remittance=("VIR SALAIRE",))]

    changes = diff_account(ACCOUNT, {}, listing, window_from=None)

    assert [change.kind for change in changes] == [ChangeKind.ADDED, ChangeKind.ADDED]
    assert [change.synced.transaction for change in changes] == listing
    assert all(change.synced.pending_transaction_id is None for change in changes)


def test_an_unchanged_listing_changes_nothing_and_a_redelivered_one_is_never_added_twice():
    listing = [tx("TX00001"), tx(None, "-3.00")]
    before = stored(*listing)

    assert diff_account(ACCOUNT, before, listing, window_from=date(2026, 9, 7)) == []
    assert diff_account(ACCOUNT, before, [*listing, listing[0]], window_from=date(2026, 9, 7)) == []


def test_a_changed_transaction_is_modified_under_the_same_id():
    before = stored(tx("TX00001", "-12.50"))
    corrected = tx("TX00001", "-12.50", remittance=("CB CARREFOUR NANTES", "REF 42"))

    (change,) = diff_account(ACCOUNT, before, [corrected], window_from=None)

    assert change.kind is ChangeKind.MODIFIED and change.transaction_id in before
    assert change.synced.transaction == corrected


def test_a_pending_one_settled_under_a_new_id_is_removed_and_the_booked_one_names_it():
    pending = tx("PDG001", "-30.00", status="pending", day=date(2026, 12, 3), remittance=("CB SNCF",))
    before = stored(pending, tx("TX00001"))
    booked = tx("TX77777", "-30.00", day=date(2026, 12, 5), remittance=("CB SNCF",))

    changes = diff_account(ACCOUNT, before, [booked, tx("TX00001")], window_from=date(2026, 9, 7))

    (pending_id,) = [i for i, s in before.items() if s.transaction.status == "pending"]
    removed = [c for c in changes if c.kind is ChangeKind.REMOVED]
    added = [c for c in changes if c.kind is ChangeKind.ADDED]
    assert [c.transaction_id for c in removed] == [pending_id]
    assert [c.synced.pending_transaction_id for c in added] == [pending_id]
    assert len(changes) == 2


def test_a_tip_on_a_card_payment_still_settles_its_pending_one():
    pending = tx("PDG002", "-40.00", status="pending", day=date(2026, 12, 3), remittance=("CB RESTAURANT LE PORT",))
    booked = tx("TX88888", "-46.00", day=date(2026, 12, 4), remittance=("CB RESTAURANT LE PORT",))

    changes = diff_account(ACCOUNT, stored(pending), [booked], window_from=None)

    (added,) = [c for c in changes if c.kind is ChangeKind.ADDED]
    assert added.synced.pending_transaction_id == next(iter(stored(pending)))


@pytest.mark.parametrize(
    "booked",
    [
        tx("TX9", "-30.00", day=date(2026, 12, 20), remittance=("CB SNCF",)),  # too late
        tx("TX9", "-30.00", day=date(2026, 12, 1), remittance=("CB SNCF",)),  # before the pending one
        tx("TX9", "30.00", day=date(2026, 12, 5), remittance=("CB SNCF",)),  # the other direction
        tx("TX9", "-60.00", day=date(2026, 12, 5), remittance=("CB SNCF",)),  # far from its amount
        tx("TX9", "-33.00", day=date(2026, 12, 5), remittance=("CB AUTRE",)),  # near, but another text
    ],
)
def test_a_booked_one_that_does_not_match_settles_nothing(booked):
    pending = tx("PDG001", "-30.00", status="pending", day=date(2026, 12, 3), remittance=("CB SNCF",))

    changes = diff_account(ACCOUNT, stored(pending), [booked], window_from=None)

    assert sorted(c.kind.value for c in changes) == ["added", "removed"]
    (added,) = [c for c in changes if c.kind is ChangeKind.ADDED]
    assert added.synced.pending_transaction_id is None


def test_a_vanished_pending_one_is_removed_and_two_bookings_do_not_settle_one_pending():
    pending = tx("PDG001", "-30.00", status="pending", day=date(2026, 12, 3), remittance=("CB SNCF",))
    twins = [
        tx("TX1", "-30.00", day=date(2026, 12, 4), remittance=("CB SNCF",)),
        tx("TX2", "-30.00", day=date(2026, 12, 5), remittance=("CB SNCF",)),
    ]

    assert [c.kind for c in diff_account(ACCOUNT, stored(pending), [], window_from=None)] == [ChangeKind.REMOVED]
    changes = diff_account(ACCOUNT, stored(pending), twins, window_from=None)
    settling = [c.synced.pending_transaction_id for c in changes if c.kind is ChangeKind.ADDED]
    assert sorted(settling, key=str) == [None, next(iter(stored(pending)))]  # the closest in date wins, once


def test_history_that_ages_out_of_the_window_is_not_removed():
    old = tx("TX00001", day=date(2026, 9, 1))
    recent = tx("TX00002", day=date(2026, 11, 30))
    before = stored(old, recent)

    changes = diff_account(ACCOUNT, before, [recent], window_from=date(2026, 9, 7))
    assert changes == []
    # Inside the window, a booked one the bank no longer lists is removed (the bank's word is final)
    assert kinds(diff_account(ACCOUNT, before, [old], window_from=date(2026, 9, 1))) == [
        ("removed", transaction_ids(ACCOUNT, [recent])[0])
    ]
