"""Reliability suite, faults in the middle of a sync (issue #15): the scheduled ``AccountSyncFunction`` run against the
offline 89C3 sandbox over HTTPS + mTLS and moto, with a bank failure, a timeout or a DynamoDB failure injected on the
second account, the third page of a listing or the second write of a run.

Most scenarios: Marc's accounts synced once (a cursor kept), a day later a run that fails in its middle, then runs
without the fault. It checks that the failed run was deferred as ``aisp/logic/sync/scheduler.py`` says (not synced
again at once, synced 30 minutes later), that replaying the feed from the start, from the cursor kept before the
fault and from one read just after it gives exactly the live transactions route (each id once, ``has_more`` true
only when more changes come), that the feed's head is left committed and lease-free, and how many units of the day's
quota each account spent (a call that never left gives its unit back). A fault the run retries itself (DynamoDB
cancelling one write: ``aisp/logic/sync/run.py`` diffs again) must instead leave the run successful, each change
once. Each scenario adds one case to the ``faults`` line of the reliability summary.

A short history keeps a scenario in seconds: the sandbox serves pages of 10 and the registry says 14 days, so a
first sync reads about 60 transactions an account over 6 to 7 pages (not 400 over 4).
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from botocore.exceptions import ClientError

from aisp import wiring
from aisp.banks.registry import BankRegistry
from aisp.logic.quota import quota_today
from aisp.logic.sync.run import WRITE_ATTEMPTS
from functions.account_sync import app as account_sync_app
from sandbox.store import Settings
from tests.conftest import SYNC_TABLE, FakeLambdaContext
from tests.integration import conftest as integration_fixtures
from tests.integration.journey import (
    BANK,
    SharedClock,
    accounts,
    at_path,
    closed_port,
    connect_persona,
    event,
)
from tests.reliability.faults_support import SUITE, Bank, aws_fault, bank_timeout
from tests.reliability.tally import record
from tests.sandbox.helpers import MARC_ACCOUNTS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

admin = integration_fixtures.admin
gateway = integration_fixtures.gateway

USER = "user-marc"
SYNC = f"/v1/connections/{BANK}/transactions/sync"
FIRST, SECOND, THIRD = MARC_ACCOUNTS
PAGE_SIZE = 10
HISTORY_DAYS = 14
PARIS = ZoneInfo("Europe/Paris")
# The scheduler's retry of a failed connection (SyncPolicy.retry_after), and a bit more to be past it.
RETRY_AFTER = timedelta(minutes=30)
PAST_RETRY = RETRY_AFTER + timedelta(minutes=1)
# The gateway waits SHORT_TIMEOUT for a bank answer; a hung call is held HANG by the sandbox.
SHORT_TIMEOUT = 0.8
HANG = 2.0


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """This module's own 89C3 sandbox: pages of 10 transactions, so a short history still spans several pages."""
    with integration_fixtures.start_module_sandbox(tmp_path_factory, Settings(page_size=PAGE_SIZE)) as running:
        yield running


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch):
    """The bank client's backoff between GET attempts, made short."""
    monkeypatch.setattr("aisp.stet.client._BACKOFF_BASE", 0.01)


def _short_history(registry: BankRegistry) -> BankRegistry:
    """The registry with every bank keeping :data:`HISTORY_DAYS` days (what a first sync reads)."""
    return BankRegistry(
        [
            bank.model_copy(
                update={"capabilities": bank.capabilities.model_copy(update={"history_days": HISTORY_DAYS})}
            )
            for bank in registry.banks
        ]
    )


class SyncContext(FakeLambdaContext):
    """AccountSyncFunction's context: its 300 s timeout, and a request id (the lease's owner) of its own."""

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 290_000


Change = tuple[str, dict[str, Any]]


@dataclasses.dataclass
class World:
    """Marc's connection, the gateway's clock shared with the sandbox's, and the calls a scenario makes."""

    clock: SharedClock
    bank: Bank
    admin: requests.Session
    admin_url: str
    aws: Any
    load_event: Callable[[str], dict[str, Any]]
    lambda_context: Any
    monkeypatch: Any

    def travel(self, day: date) -> None:
        """Both clocks to noon (Europe/Paris) of ``day``: far from midnight, so a scenario's Paris day holds."""
        noon = datetime.combine(day, time(12), PARIS)
        self.clock.advance(self.admin, self.admin_url, (noon - self.clock.now()).total_seconds())

    def later(self, delta: timedelta) -> None:
        self.clock.advance(self.admin, self.admin_url, delta.total_seconds())

    def today(self) -> date:
        return self.clock.now().astimezone(PARIS).date()

    def run(self) -> dict[str, Any]:
        """One scheduled run of AccountSyncFunction (the events/ payload), as a new invocation."""
        return account_sync_app.lambda_handler(self.load_event("account_sync/scheduled.json"), SyncContext())

    def connection_id(self) -> str:
        connection = wiring.connection_services().connections.find(USER, BANK)
        assert connection is not None
        return connection.connection_id

    def head(self) -> dict[str, Any]:
        """The feed's head item as DynamoDB holds it."""
        key = {"connection_id": {"S": self.connection_id()}, "sk": {"S": "feed"}}
        return self.aws.dynamodb.get_item(TableName=SYNC_TABLE, Key=key, ConsistentRead=True).get("Item", {})

    def account_items(self, account: str) -> list[dict[str, Any]]:
        """Every item the connection's partition holds for ``account``'s feed: its change items (committed or not)
        and its transactions, as DynamoDB holds them."""
        found = self.aws.dynamodb.query(
            TableName=SYNC_TABLE,
            KeyConditionExpression="connection_id = :c",
            ExpressionAttributeValues={":c": {"S": self.connection_id()}},
            ConsistentRead=True,
        )["Items"]
        return [
            item
            for item in found
            if item["sk"]["S"].startswith(f"tx#{account}#")
            or (item["sk"]["S"].startswith("chg#") and item["account_id"]["S"] == account)
        ]

    def stored_changes(self) -> int:
        """How many change items the connection's partition holds (committed or not)."""
        found = self.aws.dynamodb.query(
            TableName=SYNC_TABLE,
            KeyConditionExpression="connection_id = :c AND begins_with(sk, :p)",
            ExpressionAttributeValues={":c": {"S": self.connection_id()}, ":p": {"S": "chg#"}},
            Select="COUNT",
            ConsistentRead=True,
        )
        return int(found["Count"])

    def _page(self, cursor: str | None, count: int) -> dict[str, Any]:
        query = {"count": str(count), **({"cursor": cursor} if cursor else {})}
        loaded = at_path(event(self.load_event, "accounts/sync_transactions.json", **query), SYNC, bank_code=BANK)
        response, body = accounts(loaded, self.lambda_context)
        assert response["statusCode"] == 200, body
        return dict(body)

    def feed(self, cursor: str | None = None, *, count: int = 9) -> tuple[list[Change], str]:
        """Every change after ``cursor`` through the route, pages of ``count``, and the cursor after them.

        ``has_more`` is checked both ways: a page that says more comes is followed by changes, and after the last
        one the same cursor gives nothing more.
        """
        changes: list[Change] = []
        more = False
        while True:
            body = self._page(cursor, count)
            page = [("added", item) for item in body["added"]] + [("modified", item) for item in body["modified"]]
            page += [("removed", item) for item in body["removed"]]
            assert page or not more, "has_more said more changes would come, and none came"
            changes += page
            cursor, more = body["next_cursor"], body["has_more"]
            if not more:
                again = self._page(cursor, count)
                assert (again["added"], again["modified"], again["removed"], again["has_more"]) == ([], [], [], False)
                return changes, cursor

    def live(self) -> dict[str, dict[str, Any]]:
        """What the live transactions route lists now for each of Marc's accounts (the user's own app, every page,
        the :data:`HISTORY_DAYS` a sync reads): (account, bank id) → transaction."""
        listed: dict[str, dict[str, Any]] = {}
        since = (self.today() - timedelta(days=HISTORY_DAYS)).isoformat()
        for account in MARC_ACCOUNTS:
            path = f"/v1/connections/{BANK}/accounts/{account}/transactions"
            query = event(self.load_event, "accounts/get_transactions.json", all="true", date_from=since)
            loaded = at_path(query, path, account_id=account)
            response, body = accounts(loaded, self.lambda_context)
            assert response["statusCode"] == 200, body
            listed |= {f"{account}/{item['id']}": item for item in body["transactions"]}
        return listed

    def transaction_units(self) -> tuple[int, int, int]:
        """Today's unattended ``transactions`` units spent on each of Marc's accounts, as the ledger holds them."""
        today = quota_today(USER, BANK, services=wiring.account_services())
        used = {item.account_id: item.used for item in today.usage if item.method.value == "transactions"}
        return used.get(FIRST, 0), used.get(SECOND, 0), used.get(THIRD, 0)


@pytest.fixture
def world(gateway, aws, sandbox, admin, load_event, lambda_context, monkeypatch) -> World:
    """Marc connected, the gateway on a clock shared with the sandbox, banks keeping :data:`HISTORY_DAYS` days."""
    clock = SharedClock()
    wiring.connection_services.provide(
        dataclasses.replace(gateway, clock=clock, registry=_short_history(gateway.registry))
    )
    connect_persona(load_event, lambda_context)
    return World(
        clock=clock,
        bank=Bank(admin, sandbox.admin_url),
        admin=admin,
        admin_url=sandbox.admin_url,
        aws=aws,
        load_event=load_event,
        lambda_context=lambda_context,
        monkeypatch=monkeypatch,
    )


# ----------------------------------------------------------------------------------------------------------------
# Replaying the feed
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Replica:
    """What a client that applies the feed holds: (account, bank id) → transaction, each transaction_id once."""

    items: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    keys: dict[str, str] = dataclasses.field(default_factory=dict)  # transaction_id → (account, bank id)

    def apply(self, changes: list[Change]) -> Replica:
        for kind, item in changes:
            transaction_id = item["transaction_id"]
            if kind == "removed":
                assert transaction_id in self.keys, f"{transaction_id} removed but never added"
                self.items.pop(self.keys.pop(transaction_id))
                continue
            if kind == "added":
                assert transaction_id not in self.keys, f"{transaction_id} added twice"
            else:
                assert transaction_id in self.keys, f"{transaction_id} modified but never added"
                self.items.pop(self.keys.pop(transaction_id))
            key = f"{item['account_id']}/{item['id']}"
            assert key not in self.items, f"{key} held under two transaction ids"
            self.items[key], self.keys[transaction_id] = item, key
        return self

    def copy(self) -> Replica:
        return Replica(dict(self.items), dict(self.keys))


def _day(item: dict[str, Any]) -> str:
    return str(item["booking_date"] or item["transaction_date"])


def _bank_fields(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in {"transaction_id", "account_id", "pending_transaction_id"}}


def assert_replays_live(replica: Replica, live: dict[str, dict[str, Any]]) -> None:
    """The replica holds every live transaction as the bank lists it now, and besides them only what aged out of
    the window a sync reads (older than the oldest live one: the store keeps it, the bank no longer lists it)."""
    assert live, "the bank lists nothing"
    missing = sorted(set(live) - set(replica.items))
    assert not missing, f"lost: {missing[:5]}"
    changed = [key for key in live if _bank_fields(replica.items[key]) != live[key]]
    assert not changed, f"stale: {changed[:5]}"
    oldest = {
        account: min(_day(item) for key, item in live.items() if key.startswith(account)) for account in MARC_ACCOUNTS
    }
    extra = [key for key in set(replica.items) - set(live) if _day(replica.items[key]) >= oldest[key.split("/")[0]]]
    assert not extra, f"kept but no longer listed: {sorted(extra)[:5]}"


# ----------------------------------------------------------------------------------------------------------------
# The faults
# ----------------------------------------------------------------------------------------------------------------


def _nth(n: int, matches: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], bool]:
    """A botocore-call filter true for the ``n``-th call ``matches`` accepts (then never again)."""
    seen = itertools.count(1)
    return lambda params: matches(params) and next(seen) == n


def _sync_transaction(params: dict[str, Any]) -> bool:
    """A TransactWriteItems on SyncTable (a sync's write of changes with their transactions)."""
    tables = {next(iter(item.values())).get("TableName") for item in params.get("TransactItems", [])}
    return tables == {SYNC_TABLE}


def _account_write(account: str) -> Callable[[dict[str, Any]], bool]:
    """A TransactWriteItems on SyncTable writing ``account``'s changes (its change item names the account)."""

    def matches(params: dict[str, Any]) -> bool:
        puts = [item["Put"]["Item"] for item in params.get("TransactItems", []) if "Put" in item]
        return _sync_transaction(params) and any(put.get("account_id") == {"S": account} for put in puts)

    return matches


def _head_update(*attributes: str) -> Callable[[dict[str, Any]], bool]:
    """An UpdateItem on SyncTable's head naming every one of ``attributes`` (the lease's take sets ``seq``, its
    release ``committed_at``)."""

    def matches(params: dict[str, Any]) -> bool:
        names = set(params.get("ExpressionAttributeNames", {}).values())
        return params.get("TableName") == SYNC_TABLE and set(attributes) <= names

    return matches


@contextmanager
def _bank_rule(world: World, **rule: Any) -> Iterator[None]:
    world.bank.fault(scope="aisp", bank=BANK, **rule)
    try:
        yield
    finally:
        world.bank.clear()


@contextmanager
def _short_timeout(world: World, **rule: Any) -> Iterator[None]:
    with bank_timeout(world.monkeypatch, SHORT_TIMEOUT), _bank_rule(world, fault="timeout", hang_seconds=HANG, **rule):
        yield


@contextmanager
def _refused(world: World, fragment: str) -> Iterator[list[str]]:
    """The first page of a listing (``fragment`` in its URL, no ``page``) sent to a port where nothing listens."""
    original = requests.adapters.HTTPAdapter.send
    port = closed_port()
    redirected: list[str] = []

    def send(adapter: Any, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        url = request.url or ""
        if fragment in url and "page=" not in url:
            redirected.append(url)
            scheme, rest = url.split("://", 1)
            request.url = f"{scheme}://127.0.0.1:{port}/{rest.split('/', 1)[1]}"
        return original(adapter, request, *args, **kwargs)

    with world.monkeypatch.context() as patched:
        patched.setattr(requests.adapters.HTTPAdapter, "send", send)
        yield redirected
    assert redirected, "no call was refused"


@contextmanager
def _aws(*operations: str, fires: int = 1, **options: Any) -> Iterator[None]:
    with aws_fault(*operations, **options) as fault:
        yield
    assert fault.fired == fires, fault


def _another_writer(world: World) -> Callable[[str, dict[str, Any]], None]:
    """Just before our writer takes the lease, another one takes it (for the lease's 60 s)."""

    def take(_operation: str, params: dict[str, Any]) -> None:
        world.aws.dynamodb.update_item(
            TableName=SYNC_TABLE,
            Key=params["Key"],
            UpdateExpression="SET lease_owner = :owner, lease_until = :until",
            ExpressionAttributeValues={
                ":owner": {"S": "another-sync"},
                ":until": {"N": str(int(world.clock.now().timestamp()) + 60)},
            },
        )

    return take


def _canceled(_operation: str, _params: dict[str, Any]) -> None:
    """DynamoDB cancels the transaction: another transaction wrote one of its items at the same time."""
    raise ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "injected by the reliability suite"},
            "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}],
        },
        "TransactWriteItems",
    )


@dataclasses.dataclass(frozen=True)
class MidSync:
    """One fault injected in the middle of a run, and the ``transactions`` units each account spends that day."""

    name: str
    inject: Callable[[World], Any]
    units: tuple[int, int, int] = (2, 2, 1)
    first_sync: bool = False  # the fault hits the first sync (nothing kept before it)
    # Accounts of which the failed run leaves nothing written: their change items and transactions as before it
    untouched: tuple[str, ...] = ()


SCENARIOS = [
    MidSync(
        "bank 500 on the 2nd account's first page (it reached the bank: its unit stays spent)",
        lambda world: _bank_rule(world, fault="500", path=f"{SECOND}/transactions", page="1"),
    ),
    MidSync(
        "bank 503 on the 3rd page of the 1st account (a next page: retried, then fatal)",
        lambda world: _bank_rule(world, fault="503", path=f"{FIRST}/transactions", page="3", times=3),
        units=(2, 1, 1),
    ),
    MidSync(
        "bank 429 on the 3rd page of the 2nd account",
        lambda world: _bank_rule(world, fault="429", retry_after=30, path=f"{SECOND}/transactions", page="3"),
    ),
    MidSync(
        "the bank hangs past the timeout on the 3rd page of the 2nd account",
        lambda world: _short_timeout(world, path=f"{SECOND}/transactions", page="3", times=3),
    ),
    MidSync(
        "the bank hangs past the timeout on the 2nd account's first page (sent: its unit stays spent)",
        lambda world: _short_timeout(world, path=f"{SECOND}/transactions", page="1", times=1),
    ),
    MidSync(
        "the 2nd account's first page never leaves (connection refused: its unit comes back)",
        lambda world: _refused(world, f"{SECOND}/transactions"),
        units=(2, 1, 1),
    ),
    MidSync(
        "DynamoDB throttles the 2nd account's TransactWriteItems",
        lambda world: _aws("TransactWriteItems", code="ThrottlingException", when=_nth(2, _sync_transaction)),
    ),
    MidSync(
        "DynamoDB cancels the 2nd account's TransactWriteItems on every attempt (diffed again, then given up)",
        lambda world: _aws(
            "TransactWriteItems", code="", when=_account_write(SECOND), before=_canceled, fires=WRITE_ATTEMPTS
        ),
        untouched=(SECOND, THIRD),
    ),
    MidSync(
        "another writer holds the lease when the 2nd account is written",
        lambda world: _aws("UpdateItem", code="", when=_nth(2, _head_update("seq")), before=_another_writer(world)),
    ),
    MidSync(
        "DynamoDB fails the 2nd account's commit (written, lease held, not committed)",
        lambda world: _aws(
            "UpdateItem", code="ProvisionedThroughputExceededException", when=_nth(2, _head_update("committed_at"))
        ),
    ),
    MidSync(
        "DynamoDB fails the 2nd pack of the first sync's write (60-odd changes, packs of 50 here)",
        lambda world: _aws(
            "TransactWriteItems", code="ProvisionedThroughputExceededException", when=_nth(2, _sync_transaction)
        ),
        units=(2, 1, 1),
        first_sync=True,
    ),
]


def _epoch(item: dict[str, Any], name: str) -> int:
    return int(item[name]["N"])


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.name)
def test_a_fault_in_the_middle_of_a_sync_loses_nothing(world: World, scenario: MidSync) -> None:
    # Given Marc's accounts synced once (unless the fault hits that first sync), and a client holding the feed
    world.travel(world.today() + timedelta(days=1))
    kept = Replica()
    cursor: str | None = None
    if not scenario.first_sync:
        assert world.run()["synced"] == 1
        changes, cursor = world.feed()
        kept.apply(changes)
        world.later(timedelta(days=1))
    else:
        _, cursor = world.feed()  # the empty feed's cursor
    head = world.head()
    if scenario.first_sync:  # packs of 50 (99 deployed), so the first account's 60-odd changes take two writes
        world.monkeypatch.setattr("aisp.dal.sync._CHUNK", 50)

    before = {account: world.account_items(account) for account in scenario.untouched}

    # When a run fails in its middle
    with scenario.inject(world):
        failed = world.run()
    failed_at = world.clock.now()

    # Then the connection is deferred, not synced, and the run itself did not fail
    assert (failed["synced"], failed["deferred"], failed["failed"]) == (0, 1, 0), failed
    deferred = world.head()
    assert _epoch(deferred, "next_sync_at") <= int((failed_at + RETRY_AFTER).timestamp())
    # What was written whole before the fault is there; the feed is a consistent prefix (read by a client now)
    during, after_fault = world.feed(cursor)
    partial = kept.copy().apply(during)
    assert int(deferred.get("committed", {"N": "0"})["N"]) >= int(head.get("committed", {"N": "0"})["N"])

    if scenario.first_sync:  # the first chunk is written whole, and not visible before it is committed
        assert world.stored_changes() > 0 and during == []
    for account, items in before.items():  # nothing half-written: not an item more or changed
        assert world.account_items(account) == items, account
        assert not [item for _, item in during if item["account_id"] == account], account
    # And a run at once does not touch it (deferred), one after the retry time syncs it
    at_once = world.run()
    assert (at_once["seen"], at_once["synced"]) == (0, 0), at_once  # not due: the due index does not list it
    world.later(PAST_RETRY)
    recovered = world.run()
    assert (recovered["synced"], recovered["deferred"]) == (1, 0), recovered

    # Then replaying the feed from the start, from the cursor kept before the fault, and from the one read after it,
    # gives exactly what the bank lists now, each transaction once
    live = world.live()
    everything, _ = world.feed()
    assert_replays_live(Replica().apply(everything), live)
    assert_replays_live(kept.apply(world.feed(cursor)[0]), live)
    assert_replays_live(partial.apply(world.feed(after_fault)[0]), live)
    # The head is committed up to every number handed out, and no lease is left behind
    final = world.head()
    assert final["committed"] == final["seq"] and "lease_owner" not in final and "lease_until" not in final
    # And the day's units: one per run that read the account, but none for a call that never left
    assert world.transaction_units() == scenario.units
    record(SUITE)


@dataclasses.dataclass(frozen=True)
class Retried:
    """A fault the run retries itself, injected in its middle."""

    name: str
    inject: Callable[[World], Any]


RETRIED = [
    Retried(
        "DynamoDB cancels the 2nd account's TransactWriteItems once (a conflicting transaction): diffed again",
        lambda world: _aws("TransactWriteItems", code="", times=1, when=_account_write(SECOND), before=_canceled),
    ),
]


@pytest.mark.parametrize("scenario", RETRIED, ids=lambda scenario: scenario.name)
def test_a_fault_the_run_retries_is_recovered_in_the_same_run(world: World, scenario: Retried) -> None:
    # Given Marc's accounts synced once, a client holding the feed, and a day's new transactions
    world.travel(world.today() + timedelta(days=1))
    assert world.run()["synced"] == 1
    changes, cursor = world.feed()
    kept = Replica().apply(changes)
    world.later(timedelta(days=1))
    head = world.head()

    # When a run meets the fault in its middle
    with scenario.inject(world):
        run = world.run()

    # Then the run succeeded: synced, not deferred (a run at once finds it not due), nothing failed
    assert (run["synced"], run["deferred"], run["failed"]) == (1, 0, 0), run
    at_once = world.run()
    assert (at_once["seen"], at_once["synced"]) == (0, 0), at_once
    # Each change in the feed once, as the run counted them; the numbers the cancelled write took are skipped
    during, _ = world.feed(cursor)
    kinds = [kind for kind, _ in during]
    assert (run["added"], run["modified"], run["removed"]) == tuple(map(kinds.count, ("added", "modified", "removed")))
    retried = [item for _, item in during if item["account_id"] == SECOND]
    assert retried, "the 2nd account had nothing to write: the fault hit nothing"
    final = world.head()
    assert int(final["seq"]["N"]) - int(head["seq"]["N"]) == len(during) + len(retried)
    # Replaying the feed from the start and from the cursor kept gives exactly what the bank lists now
    live = world.live()
    assert_replays_live(kept.apply(during), live)
    assert_replays_live(Replica().apply(world.feed()[0]), live)
    # The head is committed up to every number handed out, and no lease is left behind
    assert final["committed"] == final["seq"] and "lease_owner" not in final and "lease_until" not in final
    # And one unit an account: the run diffed again without asking the bank again
    assert world.transaction_units() == (1, 1, 1)
    record(SUITE)


def test_the_bank_saying_the_days_quota_is_spent_midway_holds_that_account_until_the_next_day(world: World) -> None:
    # Given Marc's accounts synced once, and a client holding the feed
    world.travel(world.today() + timedelta(days=1))
    assert world.run()["synced"] == 1
    changes, cursor = world.feed()
    kept = Replica().apply(changes)

    # When, a day later, the bank refuses the 2nd account's listing as over its quota (403 TMRQ) in the middle of a run
    world.later(timedelta(days=1))
    with _bank_rule(world, fault="tmrq", path=f"{SECOND}/transactions", page="1"):
        failed = world.run()

    # Then the run is deferred, and the ledger holds that account's transactions spent for the day
    assert (failed["synced"], failed["deferred"]) == (0, 1), failed
    today = quota_today(USER, BANK, services=wiring.account_services())
    spent = {item.account_id: item.remaining for item in today.usage if item.method.value == "transactions"}
    assert spent[SECOND] == 0 and spent[FIRST] > 0

    # When the retry syncs the others without asking the bank for that account again
    world.later(PAST_RETRY)
    assert world.run()["synced"] == 1
    assert world.transaction_units()[0::2] == (2, 1)
    live = world.live()
    held = kept.copy().apply(world.feed(cursor)[0])
    assert {key for key in live if key not in held.items} <= {key for key in live if key.startswith(SECOND)}

    # And the next Paris day's run brings that account too: nothing lost, each transaction once
    world.travel(world.today() + timedelta(days=1))
    assert world.run()["synced"] == 1
    live = world.live()
    assert_replays_live(kept.apply(world.feed(cursor)[0]), live)
    assert_replays_live(Replica().apply(world.feed()[0]), live)
    record(SUITE)
