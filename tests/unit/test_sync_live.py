"""A live read keeps the store fresh (``aisp.logic.sync.live``), on fakes: a complete transactions listing of a synced
account puts its changes in the feed once, a read that is not one (a page before the last, a cursor, a past
``date_to``, no ``date_from``) or of a connection never synced writes nothing, a store that fails never fails the
read; the changes a live read writes are announced on the fintech's bus as a sync's (``TransactionsUpdated``, counts
only), a bus that fails never failing the read; the sync then skips what a live read stored since the previous slot
(no unit spent) and still reads the rest."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest

from aisp import errors
from aisp.logic.accounts import TransactionQuery, get_balances, get_transactions
from aisp.logic.sync.feed import read_changes, stored_balances
from aisp.logic.sync.run import sync_connection
from aisp.logic.sync.scheduler import SyncPolicy, SyncServices, next_slot, previous_slot, sync_due_connections
from aisp.models.psu import PsuInfo
from aisp.models.quota import QuotaMethod, paris_day
from aisp.models.sync import AccountFreshness
from tests.fakes import RecordingPublisher, stet_account, stet_transaction

USER, BANK = "user-marc", "13807"
MAIN, SAVINGS = "038-CPT30019654051", "038-CPT30019654052"
PSU = PsuInfo(ip_address="203.0.113.10", http_method="GET", user_agent="FintechApp/1.0")
FROM = date(2026, 11, 1)  # before every transaction of the fakes (20 November), within the bank's 90 days


def _balances(amount: str) -> dict[str, object]:
    return {
        "balances": [{"balanceType": "CLBD", "name": "Solde", "balanceAmount": {"amount": amount, "currency": "EUR"}}]
    }


@pytest.fixture
def marc(account_services, active_connection, account_bank):
    connection = active_connection(USER, BANK)
    account_bank.accounts[BANK] = {
        "accounts": [
            stet_account(MAIN, "FR7613807008043001965405158"),
            stet_account(SAVINGS, "FR7613807008043001965405255"),
        ]
    }
    account_bank.transactions[(BANK, MAIN)] = [stet_transaction(n) for n in range(1, 251)]  # 3 bank pages
    account_bank.transactions[(BANK, SAVINGS)] = [stet_transaction(n, amount="500.00", debit=False) for n in (901, 902)]
    account_bank.balances[(BANK, MAIN)] = _balances("9.00")
    account_bank.balances[(BANK, SAVINGS)] = _balances("500.00")
    return connection


def _sync(services, fresh_since=None):
    return sync_connection(USER, BANK, services=services, owner="sync-test", fresh_since=fresh_since)


def _read(services, account=MAIN, psu=PSU, **query):
    return get_transactions(
        USER, BANK, account, TransactionQuery(**query), psu=psu, services=services, owner="request-1"
    )


def _drain(services, cursor=None):
    """Every change after ``cursor``: ((kind, account, bank id), ...) and the cursor after them."""
    changes = []
    while True:
        page = read_changes(USER, BANK, cursor=cursor, count=100, services=services).model()
        changes += [("added", item.account_id, item.id) for item in page.added]
        changes += [("modified", item.account_id, item.id) for item in page.modified]
        changes += [("removed", item.account_id, item.transaction_id) for item in page.removed]
        cursor = page.next_cursor
        if not page.has_more:
            return changes, cursor


def _a_day_passes(account_bank):
    """A new transaction and a corrected text on the main account."""
    listing = account_bank.transactions[(BANK, MAIN)]
    listing[5] = dict(listing[5], remittanceInformation={"unstructured": ["PAIEMENT CORRIGE"]})
    listing.insert(0, stet_transaction(302))


def _transaction_reads(account_bank, account):
    return [call for call in account_bank.of("get_transactions") if call.kwargs["account_id"] == account]


# ----------------------------------------------------------------------------------------------------------------
# The live read writes
# ----------------------------------------------------------------------------------------------------------------


def test_a_complete_live_read_of_a_synced_account_puts_its_changes_in_the_feed_once(
    marc, account_services, account_bank, clock
):
    _sync(account_services)
    _, cursor = _drain(account_services)
    clock.advance(hours=1)
    _a_day_passes(account_bank)

    page = _read(account_services, date_from=FROM, all_pages=True)

    assert len(page.transactions) == 251 and page.next_cursor is None  # the read answers as ever
    changes, cursor = _drain(account_services, cursor)
    assert sorted(changes) == [("added", MAIN, "TX00302"), ("modified", MAIN, "TX00006")]
    known = account_services.transactions.freshness(marc.connection_id, MAIN).transactions
    assert (known.at, known.live, known.date_from) == (clock.now(), True, FROM)
    # The same read again, and then a sync, report nothing new
    _read(account_services, date_from=FROM, all_pages=True)
    assert _sync(account_services).added == 0
    assert _drain(account_services, cursor)[0] == []


def test_the_backends_unattended_read_writes_too_and_a_single_last_page_is_a_complete_listing(
    marc, account_services, account_bank
):
    _sync(account_services)
    _, cursor = _drain(account_services)
    account_bank.transactions[(BANK, SAVINGS)].insert(0, stet_transaction(903, amount="1.00", debit=False))

    _read(account_services, SAVINGS, psu=None, date_from=FROM, date_to=date(2030, 1, 1))  # one page, the last

    assert _drain(account_services, cursor)[0] == [("added", SAVINGS, "TX00903")]


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({"date_from": FROM}, id="a page before the last"),
        pytest.param({"date_from": FROM, "limit": 150}, id="the limit stops before the last page"),
        pytest.param({"date_from": FROM, "date_to": date(2026, 11, 23), "all_pages": True}, id="date_to in the past"),
        pytest.param({"all_pages": True}, id="no date_from: the bank decides what it lists"),
    ],
)
def test_a_read_that_is_not_a_complete_listing_writes_nothing(marc, account_services, account_bank, query):
    _sync(account_services)
    _, cursor = _drain(account_services)
    before = account_services.transactions.freshness(marc.connection_id, MAIN)
    _a_day_passes(account_bank)

    _read(account_services, **query)

    assert _drain(account_services, cursor)[0] == []
    assert account_services.transactions.freshness(marc.connection_id, MAIN) == before


def test_a_cursor_continuation_to_the_last_page_writes_nothing(marc, account_services, account_bank):
    _sync(account_services)
    _, cursor = _drain(account_services)
    _a_day_passes(account_bank)

    page = _read(account_services, date_from=FROM)
    while page.next_cursor is not None:
        page = _read(account_services, cursor=page.next_cursor)

    assert _drain(account_services, cursor)[0] == []


def test_a_connection_never_synced_gets_no_store(marc, account_services, transaction_store):
    _read(account_services, date_from=FROM, all_pages=True)
    get_balances(USER, BANK, MAIN, psu=PSU, services=account_services)

    assert transaction_store.freshness(marc.connection_id, MAIN) == AccountFreshness(None, None)
    assert transaction_store.live(marc.connection_id, MAIN).transactions == {}
    assert transaction_store.balances(marc.connection_id, MAIN) is None
    assert _drain(account_services)[0] == []


def test_a_listing_that_starts_after_a_kept_pending_transaction_writes_nothing(marc, account_services, account_bank):
    # Pending since 19 November: a listing from the 21st does not say whether it was released or booked
    account_bank.transactions[(BANK, MAIN)].insert(0, stet_transaction(300, amount="30.00", status="PDNG"))
    _sync(account_services)
    _, cursor = _drain(account_services)
    account_bank.transactions[(BANK, MAIN)].pop(0)

    _read(account_services, date_from=date(2026, 11, 21), all_pages=True)
    assert _drain(account_services, cursor)[0] == []

    _read(account_services, date_from=date(2026, 11, 19), all_pages=True)
    assert [kind for kind, *_ in _drain(account_services, cursor)[0]] == ["removed"]


@pytest.mark.parametrize("method", ["freshness", "live", "append", "note_listing"])
@pytest.mark.parametrize(
    "failure",
    [
        errors.PersistenceError("data store call failed", details={"operation": "sync_live"}),
        errors.ConflictError("another sync writes this connection", details={"operation": "sync_lease"}),
        errors.KeyServiceError("key service failed", details={"operation": "decrypt"}),
    ],
    ids=["store", "conflict", "key"],
)
def test_a_store_that_fails_never_fails_the_read_and_logs_no_data(
    marc, account_services, account_bank, transaction_store, monkeypatch, caplog, method, failure
):
    _sync(account_services)
    _, cursor = _drain(account_services)
    _a_day_passes(account_bank)

    def failing(*_args, **_kwargs):
        raise failure

    monkeypatch.setattr(transaction_store, method, failing)
    caplog.clear()
    page = _read(account_services, date_from=FROM, all_pages=True)

    assert len(page.transactions) == 251
    (warning,) = [record for record in caplog.records if "the next sync catches up" in record.getMessage()]
    assert warning.error_type == type(failure).__name__
    logged = str([vars(record) for record in caplog.records])
    assert "PAIEMENT" not in logged and "FR76" not in logged and "access-1" not in logged
    monkeypatch.undo()
    if method != "note_listing":  # the changes were not written; the next sync brings them
        assert _drain(account_services, cursor)[0] == []
        assert _sync(account_services).added == 1


def test_a_live_balances_read_replaces_the_kept_ones_only_where_a_sync_keeps_them(
    marc, account_services, account_bank, clock, transaction_store, monkeypatch
):
    get_balances(USER, BANK, MAIN, psu=PSU, services=account_services)
    assert transaction_store.balances(marc.connection_id, MAIN) is None  # never synced: nothing started

    _sync(account_services)
    clock.advance(hours=2)
    account_bank.balances[(BANK, MAIN)] = _balances("19.00")
    get_balances(USER, BANK, MAIN, psu=PSU, services=account_services)

    kept = stored_balances(USER, BANK, MAIN, services=account_services)
    assert kept is not None and [str(b.amount) for b in kept.balances] == ["19.00"] and kept.synced_at == clock.now()

    # A store that fails does not fail the read
    def failing(*_args, **_kwargs):
        raise errors.PersistenceError("data store call failed", details={"operation": "sync_balances_put"})

    monkeypatch.setattr(transaction_store, "put_balances", failing)
    assert [str(b.amount) for b in get_balances(USER, BANK, MAIN, psu=PSU, services=account_services)] == ["19.00"]


# ----------------------------------------------------------------------------------------------------------------
# The live read's changes on the fintech's bus
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def bus():
    return RecordingPublisher()


def _updates(bus):
    """The TransactionsUpdated on the bus: (trigger, account, added, modified, removed)."""
    return [
        (e.detail.trigger, e.detail.account_id, e.detail.added, e.detail.modified, e.detail.removed)
        for e in bus.of("TransactionsUpdated")
    ]


def test_a_live_read_that_writes_changes_announces_them_once_per_account_as_the_sync_does(
    marc, account_services, account_bank, clock, bus
):
    # Given Marc's accounts synced, and the bus
    services = dataclasses.replace(account_services, events=lambda: bus)
    _sync(services)
    _, cursor = _drain(services)
    clock.advance(hours=1)
    _a_day_passes(account_bank)
    account_bank.transactions[(BANK, SAVINGS)].insert(0, stet_transaction(903, amount="1.00", debit=False))

    # When the app reads each account's complete listing
    _read(services, date_from=FROM, all_pages=True)
    _read(services, SAVINGS, date_from=FROM, all_pages=True)

    # Then one TransactionsUpdated an account, counting what the feed got, with the ids of the connection only
    changes, _ = _drain(services, cursor)
    assert sorted(changes) == [("added", MAIN, "TX00302"), ("added", SAVINGS, "TX00903"), ("modified", MAIN, "TX00006")]
    assert _updates(bus) == [("live", MAIN, 1, 1, 0), ("live", SAVINGS, 1, 0, 0)]
    first = bus.events[0].detail
    assert (first.connection_id, first.user_id, first.bank_code) == (marc.connection_id, USER, BANK)
    assert (first.occurred_at, first.error_code) == (clock.now(), None)
    assert "TX0" not in str([event.model_dump_json() for event in bus.events])  # counts, never a transaction


def test_a_live_read_that_writes_nothing_announces_nothing_and_never_asks_for_the_bus(
    marc, account_services, account_bank, bus
):
    asked: list[str] = []

    def events():
        asked.append("bus")
        return bus

    announcing = dataclasses.replace(account_services, events=events)
    # A connection never synced: nothing stored
    _read(announcing, date_from=FROM, all_pages=True)
    # Synced, then read again with nothing new, and a read that is not a complete listing, and balances
    _sync(account_services)
    _read(announcing, date_from=FROM, all_pages=True)
    _a_day_passes(account_bank)
    _read(announcing, date_from=FROM)
    get_balances(USER, BANK, MAIN, psu=PSU, services=announcing)

    assert bus.events == [] and asked == []


def test_without_a_bus_the_live_read_still_writes_its_changes(marc, account_services, account_bank):
    services = dataclasses.replace(account_services, events=lambda: None)  # EVENT_BUS_NAME empty
    _sync(services)
    _, cursor = _drain(services)
    _a_day_passes(account_bank)

    _read(services, date_from=FROM, all_pages=True)

    assert len(_drain(services, cursor)[0]) == 2


def test_a_bus_that_fails_never_fails_the_read_and_logs_no_data(marc, account_services, account_bank, bus, caplog):
    services = dataclasses.replace(account_services, events=lambda: bus)
    _sync(services)
    _, cursor = _drain(services)
    _a_day_passes(account_bank)
    bus.fail = True
    caplog.clear()

    page = _read(services, date_from=FROM, all_pages=True)

    assert len(page.transactions) == 251
    assert len(_drain(services, cursor)[0]) == 2  # the feed is the record
    (warning,) = [record for record in caplog.records if record.getMessage() == "live read event not published"]
    assert warning.detail_type == "TransactionsUpdated"
    logged = str([vars(record) for record in caplog.records])
    assert "PAIEMENT" not in logged and "FR76" not in logged and "access-1" not in logged and "TX0" not in logged


def test_changes_written_are_announced_even_when_noting_the_listing_then_fails(
    marc, account_services, account_bank, transaction_store, bus, monkeypatch
):
    services = dataclasses.replace(account_services, events=lambda: bus)
    _sync(services)
    _, cursor = _drain(services)
    _a_day_passes(account_bank)

    def failing(*_args, **_kwargs):
        raise errors.PersistenceError("data store call failed", details={"operation": "sync_listing"})

    monkeypatch.setattr(transaction_store, "note_listing", failing)
    _read(services, date_from=FROM, all_pages=True)

    assert len(_drain(services, cursor)[0]) == 2 and _updates(bus) == [("live", MAIN, 1, 1, 0)]


@pytest.mark.parametrize("method", ["live", "append"])
def test_changes_not_written_are_not_announced(
    marc, account_services, account_bank, transaction_store, bus, monkeypatch, method
):
    services = dataclasses.replace(account_services, events=lambda: bus)
    _sync(services)
    _a_day_passes(account_bank)

    def failing(*_args, **_kwargs):
        raise errors.ConflictError("another sync writes this connection", details={"operation": "sync_lease"})

    monkeypatch.setattr(transaction_store, method, failing)
    _read(services, date_from=FROM, all_pages=True)

    assert bus.events == []


def test_the_scheduled_syncs_events_say_so(marc, account_services, services, clock, bus):
    # Given Marc's connection due now
    account_services.transactions.schedule_sync(marc.connection_id, user_id=USER, bank_code=BANK, at=clock.now())

    # When the scheduled run syncs it
    sync_due_connections(
        remaining_ms=lambda: 300_000,
        run_id="run",
        services=SyncServices(accounts=account_services, keys=services.connections, events=bus),
        policy=SyncPolicy(runs_per_day=2, workers=2),
    )

    # Then its TransactionsUpdated carry the trigger a consumer tells them apart by
    assert _updates(bus) == [("schedule", MAIN, 250, 0, 0), ("schedule", SAVINGS, 2, 0, 0)]


def test_the_wiring_gives_the_live_reads_the_syncs_bus(gateway_env, monkeypatch):  # noqa: ARG001 - the settings
    from aisp import wiring
    from aisp.aws.messaging import EventBridgePublisher
    from aisp.settings import load_settings

    # No bus named: no events
    monkeypatch.delenv("EVENT_BUS_NAME", raising=False)
    load_settings.cache_clear()
    wiring.sync_events.reset()
    assert wiring.sync_events() is None

    # A bus named: one publisher on it for each path, built without a client (boto3 waits for the first event); the
    # live reads' one makes a single short attempt, the user waiting
    monkeypatch.setenv("EVENT_BUS_NAME", "fintech-bus")
    load_settings.cache_clear()
    wiring.sync_events.reset()
    wiring.live_events.reset()
    publisher, live = wiring.sync_events(), wiring.live_events()
    assert isinstance(publisher, EventBridgePublisher) and publisher._bus == "fintech-bus"
    assert isinstance(live, EventBridgePublisher) and live._bus == "fintech-bus"
    assert (publisher._request_path, live._request_path) == (False, True)
    assert publisher._client is None and wiring.sync_events() is publisher and wiring.live_events() is live


# ----------------------------------------------------------------------------------------------------------------
# The sync skips what is fresh
# ----------------------------------------------------------------------------------------------------------------


def test_the_sync_skips_what_a_live_read_stored_since_then_spends_no_unit_for_it_and_still_syncs_the_rest(
    marc, account_services, account_bank, quota_ledger, clock
):
    _sync(account_services)
    previous = clock.now() + timedelta(minutes=30)
    clock.advance(hours=1)
    _read(account_services, date_from=FROM, all_pages=True)
    get_balances(USER, BANK, MAIN, psu=PSU, services=account_services)
    account_bank.transactions[(BANK, SAVINGS)].insert(0, stet_transaction(903, amount="1.00", debit=False))
    clock.advance(hours=1)
    main_reads, savings_reads = (
        len(_transaction_reads(account_bank, MAIN)),
        len(_transaction_reads(account_bank, SAVINGS)),
    )

    result = _sync(account_services, fresh_since=previous)

    assert (result.fresh, result.added) == (1, 1)  # the savings account's new one
    assert len(_transaction_reads(account_bank, MAIN)) == main_reads
    assert len(_transaction_reads(account_bank, SAVINGS)) == savings_reads + 1
    balance_reads = [
        call.kwargs["account_id"] for call in account_bank.of("get_balances") if call.kwargs["psu"] is None
    ]
    assert balance_reads == [MAIN, SAVINGS, SAVINGS]  # the first sync's two, then only the savings account's
    spent = {
        (key.method, key.account_id): usage.used
        for key, usage in quota_ledger.usage(BANK, USER, paris_day(clock.now()))
    }
    assert spent[(QuotaMethod.TRANSACTIONS, MAIN)] == spent[(QuotaMethod.BALANCES, MAIN)] == 1  # the first sync's
    assert spent[(QuotaMethod.TRANSACTIONS, SAVINGS)] == spent[(QuotaMethod.BALANCES, SAVINGS)] == 2


@pytest.mark.parametrize(
    ("read_from", "since_after_read"),
    [
        pytest.param(date(2026, 11, 20), False, id="a listing shorter than the sync's window"),
        pytest.param(FROM, True, id="stored before the previous slot"),
    ],
)
def test_the_sync_reads_again_what_a_live_read_did_not_make_fresh(
    marc, account_services, account_bank, clock, read_from, since_after_read
):
    _sync(account_services)
    clock.advance(hours=1)
    before_read = clock.now()
    _read(account_services, date_from=read_from, all_pages=True)
    clock.advance(hours=1)
    reads = len(_transaction_reads(account_bank, MAIN))

    result = _sync(account_services, fresh_since=clock.now() if since_after_read else before_read)

    assert result.fresh == 0
    assert len(_transaction_reads(account_bank, MAIN)) == reads + 3  # its three pages


def test_a_sync_never_counts_its_own_write_as_fresh(marc, account_services, account_bank, clock):
    since = clock.now()
    _sync(account_services)
    clock.advance(hours=1)

    assert _sync(account_services, fresh_since=since).fresh == 0


@pytest.mark.parametrize("runs", [1, 2, 4])
def test_the_previous_slot_is_the_one_before_the_slot_now_due(runs):
    from datetime import UTC, datetime

    moment = datetime(2027, 3, 27, 12, 0, tzinfo=UTC)  # across the day of 23 hours
    slots = []
    for _ in range(3 * runs + 2):
        moment = next_slot("cn_marc", moment, runs)
        slots.append(moment)
    for before, due, after in zip(slots, slots[1:], slots[2:], strict=False):
        assert previous_slot("cn_marc", due, runs) == before
        assert previous_slot("cn_marc", after - timedelta(seconds=1), runs) == before


def test_the_scheduled_run_skips_an_account_a_live_read_stored_since_the_previous_slot(
    marc, account_services, services, account_bank, clock
):
    def run():
        return sync_due_connections(
            remaining_ms=lambda: 300_000,
            run_id="run",
            services=SyncServices(accounts=account_services, keys=services.connections),
            policy=SyncPolicy(runs_per_day=2, workers=2),
        )

    # Completed: in the due index (here due now)
    account_services.transactions.schedule_sync(marc.connection_id, user_id=USER, bank_code=BANK, at=clock.now())
    assert run().synced == 1
    slot = next_slot(marc.connection_id, clock.now(), 2)
    clock.current = slot + timedelta(minutes=5)
    _read(account_services, date_from=FROM, all_pages=True)  # just after the slot: the next run need not read it
    reads = len(_transaction_reads(account_bank, MAIN))
    clock.current = next_slot(marc.connection_id, clock.now(), 2) + timedelta(minutes=1)

    assert run().synced == 1
    assert len(_transaction_reads(account_bank, MAIN)) == reads
