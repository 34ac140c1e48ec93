"""A sync of one connection (``aisp.logic.sync.run``) and the feed route's use case (``aisp.logic.sync.feed``), on
fakes: the consented accounts read unattended (one unit of the quota per method and account, pages free), the first
sync adds the whole history, later ones only what changed (pending settled under a new id, released, new), the feed
read in pages with a sealed cursor, never a change twice, and a sync of a deleted or foreign connection refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aisp import errors
from aisp.logic.connections import delete_connection
from aisp.logic.sync.feed import read_changes
from aisp.logic.sync.run import sync_connection
from aisp.models.quota import QuotaMethod, paris_day
from tests.fakes import stet_account, stet_transaction

USER, BANK = "user-marc", "13807"
MAIN, SAVINGS, NOT_CONSENTED = "038-CPT30019654051", "038-CPT30019654052", "038-CPT30019654053"


@pytest.fixture
def marc(account_services, active_connection, account_bank):
    connection = active_connection(USER, BANK)
    account_bank.accounts[BANK] = {
        "accounts": [
            stet_account(MAIN, "FR7613807008043001965405158"),
            stet_account(SAVINGS, "FR7613807008043001965405255"),
            stet_account(NOT_CONSENTED, "FR7613807008043001965405352", consented=False),
        ]
    }
    account_bank.transactions[(BANK, MAIN)] = [stet_transaction(n) for n in range(1, 251)]  # 3 bank pages
    balances = {
        "balances": [{"balanceType": "CLBD", "name": "Solde", "balanceAmount": {"amount": "9", "currency": "EUR"}}]
    }
    account_bank.balances[(BANK, MAIN)] = balances  # the savings account's are refused (404): its transactions come
    account_bank.transactions[(BANK, SAVINGS)] = [stet_transaction(n, amount="500.00", debit=False) for n in (901, 902)]
    account_bank.transactions[(BANK, NOT_CONSENTED)] = [stet_transaction(999)]
    return connection


def _sync(services):
    return sync_connection(USER, BANK, services=services, owner="sync-test")


def _sync_failing_at(seq, services, store, monkeypatch):
    """A sync whose write fails (a store error) on the change numbered ``seq``: what came before it is written."""

    def fail(_connection_id, number):
        if number == seq:
            raise errors.PersistenceError("data store call failed", details={"operation": "sync_write"})

    with monkeypatch.context() as patched:
        patched.setattr(store, "write_hook", fail)
        with pytest.raises(errors.PersistenceError):
            _sync(services)


def _changes(services, cursor=None, count=100, user=USER):
    return read_changes(user, BANK, cursor=cursor, count=count, services=services).model()


def _drain(services, cursor=None, count=100):
    """Every page after ``cursor``: (added ids, modified ids, removed ids, the last cursor)."""
    added, modified, removed = [], [], []
    while True:
        page = _changes(services, cursor, count)
        added += [(item.account_id, item.id) for item in page.added]
        modified += [(item.account_id, item.id) for item in page.modified]
        removed += [item.transaction_id for item in page.removed]
        cursor = page.next_cursor
        if not page.has_more:
            return added, modified, removed, cursor


def test_the_first_sync_stores_the_consented_history_and_the_feed_gives_it_once(marc, account_services, account_bank):
    result = _sync(account_services)

    assert (result.accounts, result.added, result.modified, result.removed) == (2, 252, 0, 0)
    added, modified, removed, _ = _drain(account_services, count=100)
    assert sorted(added) == sorted(
        [(MAIN, f"TX{n:05d}") for n in range(1, 251)] + [(SAVINGS, "TX00901"), (SAVINGS, "TX00902")]
    )
    assert modified == [] and removed == []
    # Never the account the consent does not cover
    assert [call.kwargs["account_id"] for call in account_bank.of("get_transactions")].count(NOT_CONSENTED) == 0


def test_a_sync_reads_without_the_user_and_spends_one_unit_per_method_and_account(
    marc, account_services, account_bank, quota_ledger, clock
):
    _sync(account_services)

    assert {call.kwargs["psu"] for call in account_bank.calls} == {None}
    spent = {
        (key.method, key.account_id): usage.used
        for key, usage in quota_ledger.usage(BANK, USER, paris_day(clock.now()))
    }
    assert spent == {
        (QuotaMethod.ACCOUNTS, None): 1,
        (QuotaMethod.TRANSACTIONS, MAIN): 1,  # three pages, one unit
        (QuotaMethod.TRANSACTIONS, SAVINGS): 1,
        (QuotaMethod.BALANCES, MAIN): 1,
        (QuotaMethod.BALANCES, SAVINGS): 1,  # refused by the bank, but a call the bank counted
    }


def test_a_later_sync_reports_only_what_changed(marc, account_services, account_bank, clock):
    account_bank.transactions[(BANK, MAIN)].insert(0, stet_transaction(300, amount="30.00", status="PDNG"))
    _sync(account_services)
    *_, cursor = _drain(account_services)

    # The next day: the pending card payment is booked under a new reference, one transaction's text was corrected,
    # and a new one arrived
    clock.advance(days=1)
    listing = account_bank.transactions[(BANK, MAIN)]
    pending_stored = listing.pop(0)
    booked = stet_transaction(301, amount="30.00")
    booked["remittanceInformation"] = pending_stored["remittanceInformation"]
    corrected = dict(listing[5], remittanceInformation={"unstructured": ["PAIEMENT CORRIGE"]})
    listing[5] = corrected
    listing.insert(0, booked)
    listing.insert(0, stet_transaction(302))
    result = _sync(account_services)

    assert (result.added, result.modified, result.removed) == (2, 1, 1)
    page = _changes(account_services, cursor)
    assert sorted(item.id for item in page.added) == ["TX00301", "TX00302"]
    settled = next(item for item in page.added if item.id == "TX00301")
    (gone,) = page.removed
    assert settled.pending_transaction_id == gone.transaction_id
    assert [item.remittance for item in page.modified] == [["PAIEMENT CORRIGE"]]
    assert not page.has_more
    # A sync with nothing new adds nothing to the feed
    _sync(account_services)
    assert _drain(account_services, page.next_cursor)[:3] == ([], [], [])


def test_a_sync_that_may_skip_fresh_accounts_reads_their_freshness_in_one_call(
    marc, account_services, transaction_store, clock, monkeypatch
):
    # Given a connection synced once, and a store that records its batch reads and refuses single ones
    _sync(account_services)
    batches = []
    batch_read = transaction_store.freshness_many

    def recording(connection_id, account_ids):
        batches.append(sorted(account_ids))
        return batch_read(connection_id, account_ids)

    def one_at_a_time(connection_id, account_id):
        raise AssertionError("the sync reads freshness one account at a time")

    monkeypatch.setattr(transaction_store, "freshness_many", recording)
    monkeypatch.setattr(transaction_store, "freshness", one_at_a_time)
    clock.advance(hours=1)

    # When the next sync may skip what a live read stored
    result = sync_connection(USER, BANK, services=account_services, owner="sync-test", fresh_since=clock.now())

    # Then both consented accounts' freshness came in one read (nothing fresh: its own write is not a live read)
    assert batches == [[MAIN, SAVINGS]]
    assert (result.accounts, result.fresh) == (2, 0)


def test_two_syncs_racing_report_each_update_once(marc, account_services, transaction_store, monkeypatch):
    # The second sync reads the store, then the first one runs whole before the second writes what it diffed
    read = transaction_store.live
    raced = []

    def live_then_race(connection_id, account_id, since=None):
        stored = read(connection_id, account_id, since=since)
        if not raced and since is None:  # the read a first sync diffs against (the span's came first, empty)
            raced.append(None)  # the first sync's own reads go straight through
            raced.append(sync_connection(USER, BANK, services=account_services, owner="sync-first"))
        return stored

    monkeypatch.setattr(transaction_store, "live", live_then_race)
    second = sync_connection(USER, BANK, services=account_services, owner="sync-second")

    assert raced[1].added == 252
    assert (second.added, second.modified, second.removed) == (0, 0, 0)  # diffed again against what the first wrote
    added, modified, removed, _ = _drain(account_services)
    assert len(added) == len(set(added)) == 252 and modified == removed == []


def test_a_sync_that_keeps_losing_the_store_to_other_writers_gives_up_without_writing(
    marc, account_services, transaction_store, monkeypatch
):
    from aisp.logic.sync.run import WRITE_ATTEMPTS
    from aisp.models.sync import ChangeKind, TransactionChange

    read, append = transaction_store.live, transaction_store.append
    reads, attempts = [], []

    def live_then_another_writer(connection_id, account_id, since=None):
        stored = read(connection_id, account_id, since=since)
        reads.append(account_id)
        other = TransactionChange(ChangeKind.REMOVED, "another-account", f"tx_{len(reads)}", None)
        append(connection_id, [other], owner="other", now=account_services.connections.clock.now())
        return stored

    def counted(connection_id, changes, **kwargs):
        attempts.append(kwargs["owner"])
        return append(connection_id, changes, **kwargs)

    monkeypatch.setattr(transaction_store, "live", live_then_another_writer)
    monkeypatch.setattr(transaction_store, "append", counted)
    with pytest.raises(errors.ConflictError):
        _sync(account_services)

    assert attempts == ["sync-test"] * WRITE_ATTEMPTS
    assert set(reads) == {MAIN}
    entries = transaction_store.feed(marc.connection_id, after=0, limit=100).entries
    assert {entry.change.account_id for entry in entries} == {"another-account"}  # none of the sync's
    assert len(entries) == len(reads)


def test_a_first_sync_whose_write_failed_midway_is_completed_by_the_next(
    marc, account_services, account_bank, transaction_store, clock, monkeypatch
):
    # Given the main account's 250 transactions over 50 days, newest first, and a bank that serves from date_from
    today = paris_day(clock.now())
    listing = account_bank.transactions[(BANK, MAIN)]
    for index, transaction in enumerate(listing):
        day = (today - timedelta(days=index // 5)).isoformat()
        transaction.update(transactionDate=day, valueDate=day, bookingDate=f"{day}T00:00:00+0100")
    serve = account_bank.get_transactions_page

    def from_date(bank_code, *, account_id, date_from=None, page_url=None, **kwargs):
        if account_id == MAIN and page_url is None:
            account_bank.transactions[(BANK, MAIN)] = [t for t in listing if t["transactionDate"] >= str(date_from)]
        return serve(bank_code, account_id=account_id, date_from=date_from, page_url=page_url, **kwargs)

    monkeypatch.setattr(account_bank, "get_transactions_page", from_date)

    # And the first sync's write failing on its 61st change (throttled: the writer stops there)
    _sync_failing_at(61, account_services, transaction_store, monkeypatch)

    # When the next sync runs, once the failed writer's lease has expired
    clock.advance(minutes=2)
    _sync(account_services)

    # Then the feed holds every transaction of the history, once (the 60 the failed write kept, and the rest)
    added, modified, removed, _ = _drain(account_services)
    assert sorted(added) == sorted(
        [(MAIN, f"TX{n:05d}") for n in range(1, 251)] + [(SAVINGS, "TX00901"), (SAVINGS, "TX00902")]
    )
    assert modified == [] and removed == []


def test_a_later_sync_opens_only_its_window_and_finds_what_a_whole_read_would(
    marc, account_services, account_bank, transaction_store, clock, monkeypatch
):
    # Given 60 days of history (two transactions a day) and a card payment pending for 20 days, all synced
    today = paris_day(clock.now())

    def on(transaction, days_ago):
        day = (today - timedelta(days=days_ago)).isoformat()
        transaction.update(transactionDate=day, valueDate=day)
        if transaction["status"] == "BOOK":
            transaction["bookingDate"] = f"{day}T00:00:00+0100"
        return transaction

    history = [on(stet_transaction(n), (n - 1) // 2) for n in range(1, 121)]
    pending = on(stet_transaction(300, amount="30.00", status="PDNG"), 20)
    listing = [pending, *history]
    served = {"from": None}

    def from_date(bank_code, *, account_id, date_from=None, page_url=None, **kwargs):
        if account_id == MAIN and page_url is None:  # the bank serves from date_from, plus one old transaction
            account_bank.transactions[(BANK, MAIN)] = [
                t for t in listing if t["transactionDate"] >= str(date_from) or t["resourceId"] == "TX00100"
            ]
            served["from"] = date_from
        return serve(bank_code, account_id=account_id, date_from=date_from, page_url=page_url, **kwargs)

    serve = account_bank.get_transactions_page
    monkeypatch.setattr(account_bank, "get_transactions_page", from_date)
    _sync(account_services)
    *_, cursor = _drain(account_services)

    # And the next day: the payment booked under a new reference (dated 6 days after it), one of 15 days ago gone
    clock.advance(days=1)
    today = paris_day(clock.now())
    booked = on(dict(stet_transaction(301, amount="30.00"), remittanceInformation=pending["remittanceInformation"]), 14)
    listing[:] = [booked, *(t for t in history if t["resourceId"] != "TX00031")]
    windows, by_id = [], []
    live, stored = transaction_store.live, transaction_store.stored

    def recording_live(connection_id, account_id, since=None):
        found = live(connection_id, account_id, since=since)
        if account_id == MAIN:
            windows.append((since, len(found.transactions)))
        return found

    def recording_stored(connection_id, account_id, transaction_ids):
        by_id.append(sorted(transaction_ids))
        return stored(connection_id, account_id, transaction_ids)

    monkeypatch.setattr(transaction_store, "live", recording_live)
    monkeypatch.setattr(transaction_store, "stored", recording_stored)

    # When it syncs
    result = _sync(account_services)

    # Then the bank is read from a week before the pending payment, and the store from there only (the resync span
    # first): the window's 28 days of history and the pending one, never the 60 days
    date_from = today - timedelta(days=21 + 7)
    assert served["from"] == date_from
    span = today - timedelta(days=10)
    assert windows == [(span, 1 + 2 * 10), (date_from, 1 + 2 * 28)]
    # And the feed says what a whole read would: the payment booked and settled, the vanished one removed, and the
    # old transaction the bank listed beyond the window (looked up by id, with the new one) unchanged
    assert (result.added, result.modified, result.removed) == (1, 0, 2)
    page = _changes(account_services, cursor)
    assert [item.id for item in page.added] == ["TX00301"]
    assert page.added[0].pending_transaction_id in {item.transaction_id for item in page.removed}
    assert page.modified == [] and not page.has_more
    assert [len(asked) for asked in by_id] == [2]


def test_a_write_that_fails_before_a_settled_pending_is_removed_keeps_the_settlement(
    marc, account_services, account_bank, transaction_store, clock, monkeypatch
):
    # Given a pending card payment synced, then booked under a new reference the next day, beside a new transaction
    account_bank.transactions[(BANK, MAIN)].insert(0, stet_transaction(300, amount="30.00", status="PDNG"))
    first = _sync(account_services)
    *_, cursor = _drain(account_services)
    clock.advance(days=1)
    listing = account_bank.transactions[(BANK, MAIN)]
    pending = listing.pop(0)
    booked = dict(stet_transaction(301, amount="30.00"), remittanceInformation=pending["remittanceInformation"])
    listing[:0] = [stet_transaction(302), booked]

    # When that day's write fails on its last change (two added, then the removal: written last), then syncs again
    _sync_failing_at(first.committed + 3, account_services, transaction_store, monkeypatch)
    clock.advance(minutes=2)
    _sync(account_services)

    # Then the feed says it once: the booked one added naming the pending one, which is removed
    page = _changes(account_services, cursor)
    assert sorted(item.id for item in page.added) == ["TX00301", "TX00302"]
    settled = next(item for item in page.added if item.id == "TX00301")
    assert [item.transaction_id for item in page.removed] == [settled.pending_transaction_id]
    assert page.modified == [] and not page.has_more


def test_the_feed_pages_with_a_cursor_and_never_gives_a_change_twice(marc, account_services):
    _sync(account_services)

    first = _changes(account_services, count=100)
    second = _changes(account_services, first.next_cursor, count=100)
    third = _changes(account_services, second.next_cursor, count=100)
    after = _changes(account_services, third.next_cursor, count=100)

    assert (first.has_more, second.has_more, third.has_more) == (True, True, False)
    ids = [item.transaction_id for page in (first, second, third) for item in page.added]
    assert len(ids) == len(set(ids)) == 252
    assert after.added == [] and not after.has_more and after.synced_at == first.synced_at
    # The same cursor read again gives the same page (a client that lost an answer asks again)
    again = _changes(account_services, first.next_cursor, count=100)
    assert again.model_dump(exclude={"next_cursor"}) == second.model_dump(exclude={"next_cursor"})


def test_before_any_sync_the_feed_is_empty_and_says_so(marc, account_services):
    page = _changes(account_services)

    assert (page.added, page.modified, page.removed, page.has_more, page.synced_at) == ([], [], [], False, None)
    assert page.next_cursor.startswith("s1.")


def test_a_cursor_of_another_user_or_a_forged_one_is_refused(marc, account_services, active_connection, account_bank):
    active_connection("user-alice", BANK)
    _sync(account_services)
    cursor = _changes(account_services).next_cursor

    with pytest.raises(errors.InvalidCursorError):
        _changes(account_services, cursor, user="user-alice")
    with pytest.raises(errors.InvalidCursorError):
        _changes(account_services, cursor[:-4] + "AAAA")
    with pytest.raises(errors.ConnectionNotFoundError):
        read_changes("user-bob", BANK, cursor=None, count=10, services=account_services)


def test_a_deleted_connection_has_no_feed(marc, account_services, services):
    _sync(account_services)
    delete_connection(USER, BANK, services=services)

    with pytest.raises(errors.ConnectionNotFoundError):
        _changes(account_services)
    with pytest.raises(errors.ConnectionNotFoundError):
        _sync(account_services)


def test_a_sync_past_the_days_quota_stops_without_calling_the_bank(marc, account_services, account_bank):
    for _ in range(4):
        _sync(account_services)
    calls = len(account_bank.calls)

    with pytest.raises(errors.QuotaExhaustedError):
        _sync(account_services)
    assert len(account_bank.calls) == calls


def test_a_narrowed_consent_purges_the_accounts_it_leaves_out(marc, account_services, transaction_store):
    from aisp.logic.consents import submit_consent
    from aisp.models.api import SubmitConsentRequest
    from aisp.models.psu import PsuInfo
    from tests.conftest import FakeLambdaContext

    _sync(account_services)
    connection_id = marc.connection_id
    assert set(transaction_store.accounts(connection_id)) == {MAIN, SAVINGS}

    submit_consent(
        user_id=USER,
        bank_code=BANK,
        request=SubmitConsentRequest(
            balances=["FR7613807008043001965405158"],
            transactions=["FR7613807008043001965405158"],
            psu_identity=False,
            trusted_beneficiaries=False,
        ),
        psu=PsuInfo(ip_address="203.0.113.10", http_method="PUT"),
        idempotency_key=None,
        lambda_context=FakeLambdaContext(),
        services=account_services,
    )

    assert set(transaction_store.accounts(connection_id)) == {MAIN}
    assert transaction_store.live(connection_id, SAVINGS).transactions == {}
    added, *_ = _drain(account_services)
    assert {account for account, _ in added} == {MAIN}  # the feed forgot the savings account's changes too


def test_an_account_the_bank_stops_linking_is_purged_by_the_next_sync(marc, account_services, account_bank):
    _sync(account_services)
    savings = account_bank.accounts[BANK]["accounts"][1]
    savings["_links"] = {}  # the consent at the bank no longer covers it

    _sync(account_services)

    assert account_services.transactions.live(marc.connection_id, SAVINGS).transactions == {}
    assert account_services.transactions.live(marc.connection_id, MAIN).transactions


def test_deleting_the_connection_forgets_its_synced_transactions(marc, account_services, services, transaction_store):
    import dataclasses

    _sync(account_services)
    with_store = dataclasses.replace(services, transactions=transaction_store)

    delete_connection(USER, BANK, services=with_store)

    assert transaction_store.accounts(marc.connection_id) == {}
    assert transaction_store.live(marc.connection_id, MAIN).transactions == {}
    assert transaction_store.feed(marc.connection_id, after=0, limit=10).entries == []


def test_a_spent_balances_quota_does_not_hold_back_the_transactions(marc, account_services, quota_ledger, clock):
    from aisp.models.quota import QuotaKey

    day = paris_day(clock.now())
    for _ in range(4):  # the backend read the main account's balances four times today
        quota_ledger.reserve(QuotaKey(BANK, USER, MAIN, QuotaMethod.BALANCES, day), limit=4, expires_at=clock.now())

    result = _sync(account_services)

    assert result.added == 252  # every transaction still synced
    assert account_services.transactions.balances(marc.connection_id, MAIN) is None  # none kept yet
