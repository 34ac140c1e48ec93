"""A simulated month of scheduled syncs at the default settings against the offline 89C3 sandbox over HTTPS with mTLS
(moto for the tables): BPCE's 4 unattended reads a day are never exceeded, by the sandbox's own count.

The real scheduler (``sync_due_connections`` over ``wiring``'s services and policy) runs every 30 minutes
(``SyncScheduleRate``) of the sandbox's clock from 2027-03-10 to 2027-04-10, through the 23-hour Paris day of
2027-03-28, with the gateway's clock moved with it. On a few days the fintech backend spends some of the day's reads
itself, before the day's first sync. The judge is the sandbox's quota counter (per client, PSU, account, method and
Paris day), not the gateway's ledger. Design: ``docs/sync.md`` (The schedule), ``docs/accounts.md`` (the quota).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests

from aisp import wiring
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

# About 1,500 scheduled runs and 62 syncs (the first of 1,200 transactions), each sync reading back its accounts from
# moto: 5 to 8 minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

PARIS = ZoneInfo("Europe/Paris")
START = datetime(2027, 3, 10, 9, 15, tzinfo=PARIS)  # Marc connects
END = datetime(2027, 4, 10, 23, 40, tzinfo=PARIS)  # 31 days later, past the day's last slot
STEP = timedelta(minutes=30)  # SyncScheduleRate's default
RUNS_PER_DAY = 2  # SyncRunsPerDay's default
LIMIT = 4  # BPCE's unattended reads a day, per account and method
DST_DAY = date(2027, 3, 28)  # 23 hours in Paris

FIRST, SECOND, THIRD = MARC_ACCOUNTS
IBAN = dict(zip(MARC_ACCOUNTS, MARC_IBANS, strict=True))  # the sandbox counts by IBAN
EVERY_KEY = [(NO_ACCOUNT_KEY, "accounts")] + [(iban, m) for iban in MARC_IBANS for m in ("balances", "transactions")]

# The fintech backend's own unattended reads, before the day's first sync: (method, account, reads)
BACKEND_READS = {
    date(2027, 3, 13): ("balances", FIRST, 1),  # 3 with the syncs' 2
    date(2027, 3, 17): ("balances", FIRST, 3),  # the second sync keeps the first's balances of this account
    date(2027, 3, 22): ("transactions", SECOND, 3),  # the second sync leaves this account to the next day
    date(2027, 3, 27): ("accounts", None, 3),  # the second sync is deferred to the next day's first slot
}
KEPT_DAY = date(2027, 3, 17)
DEFERRED_DAY = date(2027, 3, 27)
# What the sandbox counts on those days, where it differs from every sync's one read of each (account, method)
BACKEND_DAY_COUNTS = {
    date(2027, 3, 13): {(IBAN[FIRST], "balances"): 3},
    date(2027, 3, 17): {(IBAN[FIRST], "balances"): 4},
    date(2027, 3, 22): {(IBAN[SECOND], "transactions"): 4},
    # The deferred sync read nothing: its account list was refused by the gateway before the bank was called
    date(2027, 3, 27): dict.fromkeys(EVERY_KEY, 1) | {(NO_ACCOUNT_KEY, "accounts"): 4},
}


@dataclasses.dataclass
class Month:
    """The clocks, and what the sandbox's quota counter decided: (Paris day, account key, method) → calls."""

    clock: SharedClock
    admin: requests.Session
    sandbox: RunningSandbox
    counted: Counter[tuple[date, str, str]]
    refused: Counter[tuple[date, str, str]]

    def move_to(self, moment: datetime) -> None:
        self.clock.advance(self.admin, self.sandbox.admin_url, (moment - self.clock.now()).total_seconds())

    def step(self) -> None:
        self.clock.advance(self.admin, self.sandbox.admin_url, STEP.total_seconds())


@pytest.fixture
def month(gateway, sandbox, admin, monkeypatch) -> Iterator[Month]:
    """The gateway on a clock shared with the sandbox; every decision of the sandbox's quota counter recorded.

    moto's TransactWriteItems gets the local stack's fix (a table backed up once per call, not once per item: the
    same backup, minutes less), which keeps moto's semantics and so stays for the rest of the session.
    """
    moto_fixes.install()
    clock = SharedClock()
    wiring.connection_services.provide(dataclasses.replace(gateway, clock=clock))
    counted: Counter[tuple[date, str, str]] = Counter()
    refused: Counter[tuple[date, str, str]] = Counter()
    take = QuotaCounter.take

    def recorded(counter: QuotaCounter, day: date, key: tuple[str, str, str, str], limit: int) -> bool:
        allowed = take(counter, day, key, limit)
        (counted if allowed else refused)[(day, key[2], key[3])] += 1
        return allowed

    monkeypatch.setattr(QuotaCounter, "take", recorded)
    yield Month(clock=clock, admin=admin, sandbox=sandbox, counted=counted, refused=refused)


def _backend_read(load_event, lambda_context, method: str, account: str | None, day: date) -> None:
    """One unattended read by the fintech backend that reaches the bank (a live one for balances)."""
    if method == "accounts":
        loaded = event(load_event, "accounts/list_accounts.json")
    else:
        path = f"/v1/connections/{BANK}/accounts/{account}/{method}"
        name = "accounts/get_balances.json" if method == "balances" else "accounts/get_transactions.json"
        # A live balances read (the stored ones spend nothing); the last week's transactions
        query = {"live": "true"} if method == "balances" else {"date_from": (day - timedelta(days=7)).isoformat()}
        loaded = at_path(event(load_event, name, **query), path, bank_code=BANK, account_id=account or "")
    response, body = accounts(as_backend(loaded), lambda_context)
    assert response["statusCode"] == 200, body


def _stored_balances_synced_at(load_event, lambda_context, account: str) -> datetime:
    """When the sync read the balances the backend's (not live) unattended read gets."""
    path = f"/v1/connections/{BANK}/accounts/{account}/balances"
    loaded = at_path(event(load_event, "accounts/get_balances.json"), path, bank_code=BANK, account_id=account)
    response, body = accounts(as_backend(loaded), lambda_context)
    assert response["statusCode"] == 200, body
    return datetime.fromisoformat(body["synced_at"])


def _paris_day(moment: datetime) -> date:
    return moment.astimezone(PARIS).date()


@dataclasses.dataclass
class Simulated:
    """What the month did: each day's scheduled runs that synced or deferred the connection (when each ended, its
    summary), and when the stored balances of each account were read, at the end of KEPT_DAY."""

    connection_id: str
    runs: dict[date, list[tuple[datetime, SyncSummary]]]
    kept_balances: dict[str, datetime]


def _simulate(month: Month, load_event, lambda_context) -> Simulated:
    """Connect Marc at START, then run the scheduler every STEP until END, the backend reading on its days."""
    month.move_to(START.astimezone(UTC))
    connect_persona(load_event, lambda_context)
    connection = wiring.connection_services().connections.find("user-marc", BANK)
    assert connection is not None
    services, policy = wiring.sync_services(), wiring.sync_policy()
    assert policy.runs_per_day == RUNS_PER_DAY  # the deployment's default
    simulated = Simulated(connection_id=connection.connection_id, runs={}, kept_balances={})
    backend_done: set[date] = set()
    while month.clock.now() < END:
        month.step()
        day = _paris_day(month.clock.now())
        if day in BACKEND_READS and day not in backend_done:  # the day's first run: before its first sync
            backend_done.add(day)
            method, account, reads = BACKEND_READS[day]
            for _ in range(reads):
                _backend_read(load_event, lambda_context, method, account, day)
        summary = sync_due_connections(
            remaining_ms=lambda: 290_000, run_id=f"run-{month.clock.now()}", services=services, policy=policy
        )
        assert summary.failed == 0, summary
        if summary.synced or summary.deferred:
            # Taken after the run: its claim (next_sync_at <= the clock) was at or before this moment
            runs = simulated.runs.setdefault(day, [])
            runs.append((month.clock.now(), summary))
            if day == KEPT_DAY and len(runs) == RUNS_PER_DAY:
                simulated.kept_balances = {
                    account: _stored_balances_synced_at(load_event, lambda_context, account)
                    for account in MARC_ACCOUNTS
                }
    return simulated


def test_a_month_of_syncs_never_exceeds_the_quota_and_the_feed_replays_to_the_live_transactions(
    month, load_event, lambda_context
):
    simulated = _simulate(month, load_event, lambda_context)
    runs = simulated.runs
    days = sorted(runs)
    assert (days[0], days[-1], len(days)) == (START.date(), END.date(), 32)

    # The sandbox never refused a call, and counted at most 4 a day for each account and method: exactly one
    # per sync that read it, plus the backend's own
    assert month.refused == Counter()
    assert max(month.counted.values()) <= LIMIT
    for day in days:
        expected = dict.fromkeys(EVERY_KEY, len(runs[day])) | BACKEND_DAY_COUNTS.get(day, {})
        assert {key: month.counted[(day, *key)] for key in EVERY_KEY} == expected, day
    assert {day for day, _, _ in month.counted} == set(days)

    _assert_rhythm(simulated)

    # What the quota did not allow was deferred, never failed: the account list spent by the backend defers the
    # second sync to the next day; spent balances keep the first sync's ones, the other accounts' are newer
    outcomes = {day: [(summary.synced, summary.deferred) for _, summary in runs[day]] for day in days}
    assert outcomes.pop(DEFERRED_DAY) == [(1, 0), (0, 1)]
    assert all(outcome == [(1, 0)] * len(outcome) for outcome in outcomes.values()), outcomes
    first_run, second_run = (moment for moment, _ in runs[KEPT_DAY])
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

    A new connection waits for its first slot too (the connect flow puts it in the due index there), so its first
    day has only the slots left after it connected (1 or 2 of them, by where its id puts them).
    """
    runs = simulated.runs
    days = sorted(runs)
    assert 1 <= len(runs[days[0]]) <= RUNS_PER_DAY
    assert {day: len(runs[day]) for day in days[1:]} == dict.fromkeys(days[1:], RUNS_PER_DAY)
    assert DST_DAY in days[1:]
    for day in days:
        first_index = RUNS_PER_DAY - len(runs[day])  # the first day's syncs are its last slots
        for index, (moment, _) in enumerate(runs[day], first_index):
            slot = _slot(simulated, day, index)
            assert slot <= moment < slot + STEP + timedelta(minutes=2), (day, index, moment, slot)


def _slot(simulated: Simulated, day: date, index: int) -> datetime:
    """The connection's ``index``-th sync slot of the Paris ``day``."""
    slot = datetime.combine(day, datetime.min.time(), PARIS).astimezone(UTC)
    for _ in range(index + 1):
        slot = next_slot(simulated.connection_id, slot, RUNS_PER_DAY)
    return slot
