"""A simulated month of scheduled syncs at the default settings against the offline 89C3 sandbox over HTTPS with mTLS
(moto for the tables): BPCE's 4 unattended reads a day are never exceeded, by the sandbox's own count.

The real scheduler (``sync_due_connections`` over ``wiring``'s services and policy) runs every 30 minutes
(``SyncScheduleRate``) of the sandbox's clock from 2027-03-10 to 2027-04-10, through the 23-hour Paris day of
2027-03-28, with the gateway's clock moved with it. On a few days the fintech backend reads unattended too, some
reads live ones that the store keeps (so a sync skips what they made fresh). The judge is the sandbox's quota counter
(per client, PSU, account, method and Paris day), not the gateway's ledger. Design: ``docs/sync.md`` (The schedule,
Live reads), ``docs/accounts.md`` (the quota).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import Table

from aisp import wiring
from aisp.logic import connections as connection_logic
from aisp.logic.sync.run import RESYNC_DAYS
from aisp.logic.sync.scheduler import SyncSummary, next_slot, sync_due_connections
from local import moto_fixes
from sandbox.aisp import NO_ACCOUNT_KEY
from sandbox.server import RunningSandbox
from sandbox.store import QuotaCounter
from tests.integration.journey import (
    BANK,
    SharedClock,
    accounts,
    as_backend,
    at_path,
    bank_fields,
    connect_persona,
    event,
    live_transactions,
    replay,
    sync_feed,
)
from tests.sandbox.helpers import MARC_ACCOUNTS, MARC_IBANS

# About 1,500 scheduled runs and 62 syncs (the first of 1,200 transactions); most of the time is moto answering the
# runs' due-index queries and catch-up claims.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

PARIS = ZoneInfo("Europe/Paris")
START = datetime(2027, 3, 10, 9, 15, tzinfo=PARIS)  # Marc connects
END = datetime(2027, 4, 10, 23, 40, tzinfo=PARIS)  # 31 days later, past the day's last slot
STEP = timedelta(minutes=30)  # SyncScheduleRate's default
RUNS_PER_DAY = 2  # SyncRunsPerDay's default
LIMIT = 4  # BPCE's unattended reads a day, per account and method
DST_DAY = date(2027, 3, 28)  # 23 hours in Paris
# Marc's connection id, fixed so that his slots are known: 40.2 % into each half of the Paris day less its last hour
# (04:25 and 16:25; 05:13 and 16:43 on the 23-hour day), after the backend's reads at the day's first run.
CONNECTION_ID = "cn_000000000000000000000000000000f6"

FIRST, SECOND, THIRD = MARC_ACCOUNTS
IBAN = dict(zip(MARC_ACCOUNTS, MARC_IBANS, strict=True))  # the sandbox counts by IBAN
ACCOUNTS_KEY = (NO_ACCOUNT_KEY, "accounts")
EVERY_KEY = [ACCOUNTS_KEY] + [(iban, m) for iban in MARC_IBANS for m in ("balances", "transactions")]


@dataclasses.dataclass(frozen=True)
class BackendRead:
    """Unattended reads by the fintech backend, each reaching the bank: a live balances read, or a complete
    transactions listing (``all=true``) from ``days_back`` days before the day; ``after_syncs``: made once that many
    of the day's syncs have run (0: at the day's first run, before its first sync)."""

    method: str
    account: str | None = None
    reads: int = 1
    days_back: int = 0
    after_syncs: int = 0


BALANCES_DAY, KEPT_DAY, LEFT_DAY, DEFERRED_DAY, SKIPPED_DAY = (
    date(2027, 3, 13),
    date(2027, 3, 17),
    date(2027, 3, 22),
    date(2027, 3, 27),
    date(2027, 4, 2),
)
BACKEND_READS = {
    BALANCES_DAY: [BackendRead("balances", FIRST)],
    KEPT_DAY: [BackendRead("balances", FIRST, reads=4)],
    LEFT_DAY: [BackendRead("transactions", SECOND, reads=3, days_back=RESYNC_DAYS - 3)],
    DEFERRED_DAY: [BackendRead("accounts", reads=3)],
    SKIPPED_DAY: [
        BackendRead("transactions", THIRD, days_back=3 * RESYNC_DAYS),
        BackendRead("transactions", THIRD, days_back=3 * RESYNC_DAYS, after_syncs=1),
    ],
}
# What the sandbox counts each day for each (account, method): (the backend's reads, the first sync's, the second's).
# Every sync reads each once (0, 1, 1), but where a rule of docs/sync.md says otherwise:
EXPECTED = {
    BALANCES_DAY: {
        # 1 live read at 00:15, stored; the first sync skips them (a live read since its previous slot, yesterday's
        # second), the second reads them (none since its previous slot, the first)
        (IBAN[FIRST], "balances"): (1, 0, 1),
    },
    KEPT_DAY: {
        # 4 live reads: the first sync skips them (fresh); the second would read them but the gateway's ledger has
        # the day's 4, so it keeps the stored ones (the backend's last) without calling the bank
        (IBAN[FIRST], "balances"): (4, 0, 0),
    },
    LEFT_DAY: {
        # 3 complete listings of the last week: a listing that does not reach back to the sync's window
        # (RESYNC_DAYS) does not make it fresh; the first sync reads the 4th, the second leaves the account to the
        # next day (its other accounts synced)
        (IBAN[SECOND], "transactions"): (3, 1, 0),
    },
    DEFERRED_DAY: {
        # 3 account lists: the first sync reads the 4th; the second is refused its account list by the gateway's
        # ledger before the bank is called and is deferred whole to the next day's first slot: it reads nothing
        key: (3, 1, 0) if key == ACCOUNTS_KEY else (0, 1, 0)
        for key in EVERY_KEY
    },
    SKIPPED_DAY: {
        # A complete listing of 30 days (further back than the sync's window) before each sync: each skips the
        # account's transactions (a live read since its previous slot, from a day no later than its window)
        (IBAN[THIRD], "transactions"): (2, 0, 0),
    },
}


@dataclasses.dataclass
class Month:
    """The clocks, and what the sandbox's quota counter decided: each call it allowed, in order, as (Paris day,
    account key, method), and the calls it refused."""

    clock: SharedClock
    admin: requests.Session
    sandbox: RunningSandbox
    allowed: list[tuple[date, str, str]]
    refused: Counter[tuple[date, str, str]]

    def move_to(self, moment: datetime) -> None:
        self.clock.advance(self.admin, self.sandbox.admin_url, (moment - self.clock.now()).total_seconds())

    def step(self) -> None:
        self.clock.advance(self.admin, self.sandbox.admin_url, STEP.total_seconds())

    def since(self, mark: int) -> Counter[tuple[str, str]]:
        """What the sandbox counted since ``len(allowed)`` was ``mark``: (account key, method) → calls."""
        return Counter((key, method) for _, key, method in self.allowed[mark:])


class _QueriesSortTheirOwn:
    """moto's DynamoDB with one cost less: ``Table.all_items`` sorts the whole table on every call, comparing typed
    values through a property per comparison, and ``Table.query`` calls it only to filter a partition or an index and
    then sorts what it keeps by keys that include the table's own (a total order). Within a query, the table's items
    come unsorted; anywhere else (a scan pages in that order), sorted as moto does.

    With the 1,200 transactions of Marc's SyncTable, each of the runs' 16 due-index queries sorted them all: minutes
    of the month.
    """

    def __init__(self) -> None:
        self._querying = threading.local()
        self.all_items = Table.all_items
        self.query = Table.query

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def all_items(table: Table) -> list[Item]:
            if not getattr(self._querying, "active", False):
                return self.all_items(table)
            if not table.range_key_attr:
                return list(table.items.values())  # type: ignore[arg-type]
            return [item for items in table.items.values() for item in items.values()]  # type: ignore[union-attr]

        def query(table: Table, *args: Any, **kwargs: Any) -> Any:
            self._querying.active = True
            try:
                return self.query(table, *args, **kwargs)
            finally:
                self._querying.active = False

        monkeypatch.setattr(Table, "all_items", all_items)
        monkeypatch.setattr(Table, "query", query)


@pytest.fixture
def month(gateway, sandbox, admin, monkeypatch) -> Iterator[Month]:
    """The gateway on a clock shared with the sandbox; every decision of the sandbox's quota counter recorded.

    moto's TransactWriteItems gets the local stack's fix (a table backed up once per call, not once per item: the
    same backup, minutes less), which keeps moto's semantics and so stays for the rest of the session; and, for this
    test only, its queries do not sort the whole table first (``_QueriesSortTheirOwn``).
    """
    moto_fixes.install()
    _QueriesSortTheirOwn().install(monkeypatch)
    monkeypatch.setattr(connection_logic, "new_connection_id", lambda: CONNECTION_ID)
    clock = SharedClock()
    wiring.connection_services.provide(dataclasses.replace(gateway, clock=clock))
    allowed: list[tuple[date, str, str]] = []
    refused: Counter[tuple[date, str, str]] = Counter()
    take = QuotaCounter.take

    def recorded(counter: QuotaCounter, day: date, key: tuple[str, str, str, str], limit: int) -> bool:
        if take(counter, day, key, limit):
            allowed.append((day, key[2], key[3]))
            return True
        refused[(day, key[2], key[3])] += 1
        return False

    monkeypatch.setattr(QuotaCounter, "take", recorded)
    yield Month(clock=clock, admin=admin, sandbox=sandbox, allowed=allowed, refused=refused)


def _backend_read(load_event, lambda_context, read: BackendRead, day: date) -> None:
    """One unattended read by the fintech backend that reaches the bank (a live one for balances)."""
    if read.method == "accounts":
        loaded = event(load_event, "accounts/list_accounts.json")
    else:
        account = read.account or ""
        path = f"/v1/connections/{BANK}/accounts/{account}/{read.method}"
        if read.method == "balances":  # a live read: the stored ones spend nothing
            loaded = event(load_event, "accounts/get_balances.json", live="true")
        else:  # every page from a day: a complete listing
            date_from = (day - timedelta(days=read.days_back)).isoformat()
            loaded = event(load_event, "accounts/get_transactions.json", date_from=date_from, all="true")
        loaded = at_path(loaded, path, bank_code=BANK, account_id=account)
    response, body = accounts(as_backend(loaded), lambda_context)
    assert response["statusCode"] == 200, body


def _stored_balances_synced_at(load_event, lambda_context, account: str) -> datetime:
    """When the balances the backend's (not live) unattended read gets were read from the bank."""
    path = f"/v1/connections/{BANK}/accounts/{account}/balances"
    loaded = at_path(event(load_event, "accounts/get_balances.json"), path, bank_code=BANK, account_id=account)
    response, body = accounts(as_backend(loaded), lambda_context)
    assert response["statusCode"] == 200, body
    return datetime.fromisoformat(body["synced_at"])


def _paris_day(moment: datetime) -> date:
    return moment.astimezone(PARIS).date()


@dataclasses.dataclass(frozen=True)
class Run:
    """A scheduled run that synced or deferred the connection: when it ended, its summary, what the sandbox counted
    during it."""

    moment: datetime
    summary: SyncSummary
    spent: Counter[tuple[str, str]]


@dataclasses.dataclass
class Simulated:
    """What the month did: each day's runs that synced or deferred the connection, what the backend's reads spent
    each day, and when the stored balances of each account were read, at the end of KEPT_DAY."""

    connection_id: str
    runs: dict[date, list[Run]]
    backend: dict[date, Counter[tuple[str, str]]]
    kept_balances: dict[str, datetime]


def _simulate(month: Month, load_event, lambda_context) -> Simulated:
    """Connect Marc at START, then run the scheduler every STEP until END, the backend reading on its days."""
    month.move_to(START.astimezone(UTC))
    connect_persona(load_event, lambda_context)
    connection = wiring.connection_services().connections.find("user-marc", BANK)
    assert connection is not None
    assert connection.connection_id == CONNECTION_ID
    services, policy = wiring.sync_services(), wiring.sync_policy()
    assert policy.runs_per_day == RUNS_PER_DAY  # the deployment's default
    simulated = Simulated(connection_id=connection.connection_id, runs={}, backend={}, kept_balances={})
    backend_done: set[tuple[date, int]] = set()
    while month.clock.now() < END:
        month.step()
        day = _paris_day(month.clock.now())
        runs = simulated.runs.setdefault(day, [])
        for index, read in enumerate(BACKEND_READS.get(day, [])):
            if read.after_syncs == len(runs) and (day, index) not in backend_done:
                backend_done.add((day, index))
                mark = len(month.allowed)
                for _ in range(read.reads):
                    _backend_read(load_event, lambda_context, read, day)
                simulated.backend.setdefault(day, Counter()).update(month.since(mark))
        mark = len(month.allowed)
        summary = sync_due_connections(
            remaining_ms=lambda: 290_000, run_id=f"run-{month.clock.now()}", services=services, policy=policy
        )
        assert summary.failed == 0, summary
        if summary.synced or summary.deferred:
            # Taken after the run: its claim (next_sync_at <= the clock) was at or before this moment
            runs.append(Run(month.clock.now(), summary, month.since(mark)))
            if day == KEPT_DAY and len(runs) == RUNS_PER_DAY:
                simulated.kept_balances = {
                    account: _stored_balances_synced_at(load_event, lambda_context, account)
                    for account in MARC_ACCOUNTS
                }
        else:
            assert month.since(mark) == Counter(), summary  # a run that synced nothing read nothing
    simulated.runs = {day: runs for day, runs in simulated.runs.items() if runs}
    assert backend_done == {(day, index) for day, reads in BACKEND_READS.items() for index in range(len(reads))}
    return simulated


def test_a_month_of_syncs_never_exceeds_the_quota_and_the_feed_replays_to_the_live_transactions(
    month, load_event, lambda_context
):
    simulated = _simulate(month, load_event, lambda_context)
    runs = simulated.runs
    days = sorted(runs)
    assert (days[0], days[-1], len(days)) == (START.date(), END.date(), 32)
    _assert_rhythm(simulated)

    # The sandbox never refused a call, counted at most 4 a day for each account and method (the 23-hour day too),
    # and only what the runs and the backend read
    counted = Counter((day, key, method) for day, key, method in month.allowed)
    assert month.refused == Counter()
    assert max(counted.values()) <= LIMIT
    assert {day for day, _, _ in counted} == set(days)
    for day in days:
        spent = simulated.backend.get(day, Counter()) + sum((run.spent for run in runs[day]), Counter())
        assert {key: counted[(day, *key)] for key in EVERY_KEY} == {key: spent[key] for key in EVERY_KEY}, day

    # Each run read what the rules of docs/sync.md say (the first day had only its second slot left)
    for day in days:
        expected = EXPECTED.get(day, {})
        first_index = RUNS_PER_DAY - len(runs[day])
        by_key = {key: expected.get(key, (0, 1, 1)) for key in EVERY_KEY}
        assert {key: simulated.backend.get(day, Counter())[key] for key in EVERY_KEY} == {
            key: counts[0] for key, counts in by_key.items()
        }, day
        for index, run in enumerate(runs[day], first_index):
            assert {key: run.spent[key] for key in EVERY_KEY} == {
                key: counts[1 + index] for key, counts in by_key.items()
            }, (day, index)
    assert counted[(DST_DAY, *ACCOUNTS_KEY)] == RUNS_PER_DAY

    # What the quota did not allow was deferred, never failed: the account list spent by the backend defers the
    # second sync to the next day; spent balances keep the stored ones (the backend's live read), the other
    # accounts' are the second sync's
    outcomes = {day: [(run.summary.synced, run.summary.deferred) for run in runs[day]] for day in days}
    assert outcomes.pop(DEFERRED_DAY) == [(1, 0), (0, 1)]
    assert all(outcome == [(1, 0)] * len(outcome) for outcome in outcomes.values()), outcomes
    first_run, second_run = (run.moment for run in runs[KEPT_DAY])
    kept = simulated.kept_balances
    assert kept[FIRST] <= first_run < kept[SECOND] == kept[THIRD] <= second_run

    # Replaying the whole feed gives the live transactions (the last sync was today), no id twice; what the
    # store keeps beyond them aged out of the bank's 90 days
    changes, _ = sync_feed(load_event, lambda_context)
    state = replay({}, changes)
    live = live_transactions(load_event, lambda_context)
    assert {kind for kind, _ in changes} == {"added", "modified", "removed"}
    assert live and set(live) <= set(state)
    assert all(bank_fields(state[key]) == live[key] for key in live)
    assert len({item["transaction_id"] for item in state.values()}) == len(state)
    oldest_live = min(item["booking_date"] or item["transaction_date"] for item in live.values())
    aged = [state[key] for key in set(state) - set(live)]
    assert all((item["booking_date"] or item["transaction_date"]) < oldest_live for item in aged)


def _assert_rhythm(simulated: Simulated) -> None:
    """Twice a Paris day (the 23-hour one too), at the connection's slots, within one run of the schedule.

    A new connection waits for its first slot too (the connect flow puts it in the due index there): Marc connects
    after his first slot of the day, so his first day has only its second.
    """
    runs = simulated.runs
    days = sorted(runs)
    assert len(runs[days[0]]) == 1
    assert {day: len(runs[day]) for day in days[1:]} == dict.fromkeys(days[1:], RUNS_PER_DAY)
    assert DST_DAY in days[1:]
    for day in days:
        first_index = RUNS_PER_DAY - len(runs[day])
        for index, run in enumerate(runs[day], first_index):
            slot = _slot(simulated, day, index)
            assert slot <= run.moment < slot + STEP + timedelta(minutes=2), (day, index, run.moment, slot)


def _slot(simulated: Simulated, day: date, index: int) -> datetime:
    """The connection's ``index``-th sync slot of the Paris ``day``."""
    slot = datetime.combine(day, datetime.min.time(), PARIS).astimezone(UTC)
    for _ in range(index + 1):
        slot = next_slot(simulated.connection_id, slot, RUNS_PER_DAY)
    return slot


def test_moto_s_queries_answer_the_same_without_sorting_the_table_first(aws, monkeypatch):
    # Given a table and an index whose keys sort differently as text and as numbers, written out of order
    aws.dynamodb.create_table(
        TableName="order",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "n", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "n", "AttributeType": "N"},
            {"AttributeName": "shard", "AttributeType": "N"},
            {"AttributeName": "due", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "due",
                "KeySchema": [
                    {"AttributeName": "shard", "KeyType": "HASH"},
                    {"AttributeName": "due", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    rows = [
        ("b", "10", "30"),
        ("a", "9", "5"),
        ("B", "-1", "100"),
        ("a", "100", "5"),
        ("b", "2.5", "-7"),
        ("a", "-20", None),
    ]
    for pk, number, due in rows:
        extra = {} if due is None else {"shard": {"N": "1"}, "due": {"N": due}}
        aws.dynamodb.put_item(TableName="order", Item={"pk": {"S": pk}, "n": {"N": number}, **extra})
    queries = [
        {"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": {"S": "a"}}},
        {"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": {"S": "b"}}, "Limit": 1},
        {
            "IndexName": "due",
            "KeyConditionExpression": "shard = :s AND due <= :d",
            "ExpressionAttributeValues": {":s": {"N": "1"}, ":d": {"N": "50"}},
        },
        {"IndexName": "due", "KeyConditionExpression": "shard = :s", "ExpressionAttributeValues": {":s": {"N": "1"}}},
    ]

    def answers() -> list[Any]:
        return [aws.dynamodb.query(TableName="order", **query) for query in queries]

    def scanned() -> list[Any]:
        return aws.dynamodb.scan(TableName="order")["Items"]

    by_moto, scanned_by_moto = answers(), scanned()

    # When its queries no longer sort the table first
    _QueriesSortTheirOwn().install(monkeypatch)

    # Then every query answers the same, items, order and last key, and a scan is moto's own
    assert [answer["Items"] for answer in by_moto][2] == [
        {"pk": {"S": "b"}, "n": {"N": "2.5"}, "shard": {"N": "1"}, "due": {"N": "-7"}},
        {"pk": {"S": "a"}, "n": {"N": "9"}, "shard": {"N": "1"}, "due": {"N": "5"}},
        {"pk": {"S": "a"}, "n": {"N": "100"}, "shard": {"N": "1"}, "due": {"N": "5"}},
        {"pk": {"S": "b"}, "n": {"N": "10"}, "shard": {"N": "1"}, "due": {"N": "30"}},
    ]
    assert [{k: v for k, v in answer.items() if k != "ResponseMetadata"} for answer in answers()] == [
        {k: v for k, v in answer.items() if k != "ResponseMetadata"} for answer in by_moto
    ]
    assert scanned() == scanned_by_moto
