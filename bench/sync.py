"""Background sync: a scheduled run's throughput, the stored feed against the live walk, the sync function's memory.

Three measures on one bench stack (``bench.harness``: the sandbox and moto in their own processes):

1. **Throughput per invocation**: ``sync_due_connections`` (the scheduler's pool, ``SyncPolicy().workers``) on ``--n``
   connections of Marc's (3 accounts each; token pairs minted in bulk, as ``bench.refresher`` does), bank +50 ms,
   against one worker on ``--baseline-n`` others. Two runs each: the first sync (the bank's 90 days: ~5 pages an
   account) and a later one (the resync window: one page an account), each connection put in the due index as the
   connect flow does, and made due again with the store's ``defer_sync``.
   The tables are models (``tests/memory.py``: the connections, the store, the quota ledger) with one simulated
   round trip per DynamoDB call the real ones make (``--dynamodb-latency-ms``, 4): on moto each conditional update
   costs milliseconds of moto's own Python and the figure would be moto's. The store model seals and opens every
   transaction with the real store's code (``DynamoTransactionStore``'s envelope, the deployed KMS key); left out is
   PynamoDB/botocore building and parsing the requests. Events go to EventBridge on moto.
2. **Peak memory** of ``AccountSyncFunction``'s real handler in a process of its own (``bench.memory.run_child``) over
   one scheduled run on moto: the bulk persona's first sync (10,000 transactions) and ``--memory-connections``
   Marc connections, bank +20 ms. That run also fills ``SyncTable`` for the next measure.
3. **Reading 10,000 stored transactions**: ``GET /v1/connections/13807/transactions/sync?count=500`` through the
   AccountsFunction handler, following ``next_cursor`` while ``has_more`` (20 invocations, the store on moto),
   against the live ``all=true`` walk of the same history (2 invocations over 100 bank pages at +20 ms),
   interleaved ``--runs`` times. Targets: <= 0.5 s and >= 5x faster than live, judged on DynamoDB's figure: every
   AWS call of the read is metered (``aws_calls``: calls, DynamoDB items and bytes, the wait for the answers), and
   the wall time less that wait is ours; with each call a ``--dynamodb-latency-ms`` round trip instead of moto's
   answer (moto sorts the whole partition in Python on every query; DynamoDB reads only the page's items), that is
   the read on DynamoDB. The moto figure is reported beside it. cProfile says where our part goes.

Writes bench/results/sync.json.

Usage: python -m bench.sync [--n 200] [--baseline-n 20] [--latency-ms 50] [--dynamodb-latency-ms 4]
                            [--read-latency-ms 20] [--runs 3] [--memory-connections 2] [--profile] [--feed-only]

``--feed-only`` skips the throughput runs: the store is still filled by the sync function's run (measure 2), the feed
is read against the live walk and reported; nothing is written to bench/results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from bench.harness import BANK, BULK, MARC_ACCOUNTS, ROOT, Gateway, Stack, bench_stack, quiet_stdout, write_result
from bench.memory import run_child, seed_due_connections
from bench.pagination import PATH as LIVE_PATH
from bench.pagination import through_gateway
from bench.warm import profile_by_package

if TYPE_CHECKING:
    from aisp.logic.sync.scheduler import SyncServices, SyncSummary
    from bench.sync_tables import RoundTripStore

QUOTA = 1_000_000  # the sandbox's unattended calls a day: every minted grant is Marc's, who shares one quota
TOTAL = 10_000  # the bulk persona's transactions
FEED_COUNT = 500  # the route's largest page
READ_TARGET_SECONDS = 0.5
SPEEDUP_TARGET = 5.0
FULL_VCPU_MB = 1769  # Lambda allocates CPU in proportion to memory: one full vCPU at 1769 MB
SYNC_FUNCTION = "AccountSyncFunction"
ACCOUNTS_FUNCTION = "AccountsFunction"
FEED_PATH = f"/v1/connections/{BANK}/transactions/sync"
BULK_USER = "bench-sync-bulk"


# -- 1. throughput ---------------------------------------------------------------------------------------------------


@dataclass
class Fleet:
    """One set of connections on its own model tables."""

    services: SyncServices
    store: RoundTripStore
    connection_ids: list[str]


@dataclass
class Timed:
    """One timed scheduled run."""

    kind: str
    workers: int
    connections: int
    accounts: int
    changes: int
    seconds: float
    cpu_seconds: float

    def row(self) -> dict[str, Any]:
        return {
            "run": self.kind,
            "workers": self.workers,
            "connections": self.connections,
            "accounts": self.accounts,
            "changes": self.changes,
            "seconds": round(self.seconds, 2),
            "accounts_per_second": round(self.accounts / self.seconds, 1),
            "cpu_ms_per_account": round(1000 * self.cpu_seconds / self.accounts, 2),
        }


def fleet(stack: Stack, count: int, prefix: str, latency: float) -> Fleet:
    """``count`` ACTIVE connections (minted pairs, stored through the model repository), never synced, due now."""
    from pydantic import SecretStr  # noqa: PLC0415

    from aisp import wiring  # noqa: PLC0415
    from aisp.dal.sync import DynamoTransactionStore  # noqa: PLC0415
    from aisp.logic.sync.scheduler import SyncServices  # noqa: PLC0415
    from aisp.models.connection import TokenPair  # noqa: PLC0415
    from bench.sync_tables import RoundTripLedger, RoundTripStore  # noqa: PLC0415
    from tests.memory import MemoryConnectionRepository, MemoryTransactionStore  # noqa: PLC0415

    repo = MemoryConnectionRepository(wiring.token_cipher(), latency=latency)
    store = RoundTripStore(latency, DynamoTransactionStore(wiring.token_cipher))
    deployed = wiring.account_services()
    connections = replace(deployed.connections, connections=repo, transactions=store)
    accounts = replace(
        deployed, connections=connections, quota=RoundTripLedger(latency), transactions=store, remembered=None
    )
    now = datetime.now(UTC).replace(microsecond=0)
    ids = []
    for index, (access, refresh) in enumerate(stack.sandbox.mint(count)):
        user = f"{prefix}-{index:05d}"
        repo.activate(
            user_id=user,
            bank_code=BANK,
            connection_id=f"cn_{user}",
            expected_version=None,
            tokens=TokenPair(access_token=SecretStr(access), refresh_token=SecretStr(refresh)),
            access_expires_at=now + timedelta(minutes=50),
            reauth_due_at=now + timedelta(days=90),
            now=now,
        )
        ids.append(f"cn_{user}")
        # In the due index, as a completed connection (no round trip: the connect flow's, not the run's)
        MemoryTransactionStore.schedule_sync(store, f"cn_{user}", user_id=user, bank_code=BANK, at=now)
    return Fleet(SyncServices(accounts=accounts, keys=repo, events=wiring.sync_services().events), store, ids)


def scheduled_run(target: Fleet, workers: int, kind: str) -> Timed:
    from aisp.logic.sync.scheduler import SyncPolicy, sync_due_connections  # noqa: PLC0415
    from tests.memory import MemoryTransactionStore  # noqa: PLC0415

    policy = SyncPolicy(workers=workers, time_reserve_seconds=5)
    cpu, start = time.process_time(), time.perf_counter()
    summary: SyncSummary = sync_due_connections(
        remaining_ms=lambda: 3_600_000, run_id=f"bench-{kind}-{workers}", services=target.services, policy=policy
    )
    elapsed, cpu_used = time.perf_counter() - start, time.process_time() - cpu
    count = len(target.connection_ids)
    assert (summary.synced, summary.failed, summary.deferred) == (count, 0, 0), summary
    accounts = sum(len(MemoryTransactionStore.accounts(target.store, cid)) for cid in target.connection_ids)
    assert accounts == count * len(MARC_ACCOUNTS), accounts
    changes = summary.added + summary.modified + summary.removed
    return Timed(kind, workers, count, accounts, changes, elapsed, cpu_used)


def make_due(target: Fleet) -> None:
    """Every connection due again now (its next slot is hours away): the later sync's run."""
    from tests.memory import MemoryTransactionStore  # noqa: PLC0415

    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    for connection_id in target.connection_ids:
        MemoryTransactionStore.defer_sync(target.store, connection_id, at=now)


def throughput(stack: Stack, args: argparse.Namespace, out: IO[str]) -> list[Timed]:
    from aisp.logic.sync.scheduler import SyncPolicy  # noqa: PLC0415

    latency = args.dynamodb_latency_ms / 1000
    workers = SyncPolicy().workers
    pool, single = fleet(stack, args.n, "sync-pool", latency), fleet(stack, args.baseline_n, "sync-one", latency)
    runs = []
    for kind in ("first sync", "later sync"):
        for target, count in ((pool, workers), (single, 1)):
            print(f"  {kind}, {len(target.connection_ids)} connections, {count} worker(s)...", file=out, flush=True)
            runs.append(scheduled_run(target, count, kind))
        make_due(pool)
        make_due(single)
    return runs


# -- 2. the sync function's peak memory (its run fills SyncTable) --------------------------------------------------


def due_now(users: list[str]) -> None:
    """Each user's connection in the due index, due now (the connect flow schedules a new one at its first slot,
    hours away, and seeded ones are not scheduled at all)."""
    from aisp import wiring  # noqa: PLC0415

    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    for user in users:
        connection = wiring.connection_repository().find(user, BANK)
        assert connection is not None, user
        wiring.transaction_store().schedule_sync(connection.connection_id, user_id=user, bank_code=BANK, at=now)


def sync_memory(stack: Stack, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    stack.gateway.connect(sub=BULK_USER, identifier=BULK)
    seed_due_connections(stack, args.memory_connections)
    due_now([BULK_USER] + [f"mem-refresh-{index:04d}" for index in range(args.memory_connections)])
    scheduled = json.loads((ROOT / "events" / "account_sync" / "scheduled.json").read_text(encoding="utf-8"))
    result = run_child(stack.gateway, SYNC_FUNCTION, [scheduled], tmp)
    summary = result["answers"][0]
    assert summary["synced"] == 1 + args.memory_connections, summary
    # On moto the store's writes are slow (~10 s per 1,000 changes): more connections stop the run for time.
    assert summary["failed"] == summary["deferred"] == 0 and not summary["stopped_for_time"], summary
    assert summary["added"] >= TOTAL, summary
    return {**result, "summary": summary}


# -- 3. the stored feed against the live walk ----------------------------------------------------------------------


@dataclass
class AwsCalls:
    """This process's AWS calls over a span: how many (by service), the DynamoDB items and bytes they returned, and
    the time spent waiting for the answers (botocore's send and the body's read: on the bench, moto's own time)."""

    calls: dict[str, int] = field(default_factory=dict)
    items: int = 0
    response_bytes: int = 0
    waiting_seconds: float = 0.0


@contextlib.contextmanager
def aws_calls() -> Iterator[AwsCalls]:
    """Meter every AWS call made in this process while open (the handlers run in it; moto runs in its own)."""
    from unittest.mock import patch  # noqa: PLC0415

    from botocore.client import BaseClient  # noqa: PLC0415
    from botocore.endpoint import Endpoint  # noqa: PLC0415

    meter = AwsCalls()
    send, call = vars(Endpoint)["_send"], vars(BaseClient)["_make_api_call"]

    def timed_send(self: Endpoint, request: Any) -> Any:
        start = time.perf_counter()
        try:
            response = send(self, request)
            meter.response_bytes += len(response.content)  # read here: the wait for the body is moto's too
            return response
        finally:
            meter.waiting_seconds += time.perf_counter() - start

    def counted_call(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        response = call(self, operation_name, api_params)
        service = self.meta.service_model.service_name
        meter.calls[service] = meter.calls.get(service, 0) + 1
        if service == "dynamodb":
            meter.items += len(response.get("Items", ())) + ("Item" in response)
        return response

    with patch.object(Endpoint, "_send", timed_send), patch.object(BaseClient, "_make_api_call", counted_call):
        yield meter


@dataclass
class Handled:
    """The time spent in a function's handler (what Lambda bills), wall and this process's CPU."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0


@contextlib.contextmanager
def handler_time(gateway: Gateway, function: str) -> Iterator[Handled]:
    """Time ``function``'s handler calls while open: without the local adapter's JSON copies of the event and the
    result, and the client's parse of the answer, which are the bench's, not the function's."""
    runtime = gateway.runtime(function)
    handler = runtime._handler  # noqa: SLF001 - timed, then put back
    handled = Handled()

    def timed(event: dict[str, Any], context: Any) -> Any:
        cpu, start = time.process_time(), time.perf_counter()
        try:
            return handler(event, context)
        finally:
            handled.seconds += time.perf_counter() - start
            handled.cpu_seconds += time.process_time() - cpu

    runtime._handler = timed  # noqa: SLF001
    try:
        yield handled
    finally:
        runtime._handler = handler  # noqa: SLF001


@dataclass
class Read:
    """One complete read of the history (``aws``: its AWS calls, ``handled``: its handler's time, for the feed)."""

    requests: int
    transactions: int
    seconds: float
    cpu_seconds: float
    aws: AwsCalls | None = None
    handled: Handled | None = None

    @property
    def own_seconds(self) -> float:
        """The handler's wall time less the wait for AWS answers: ours, with moto's and the bench client's left out."""
        handled = self.seconds if self.handled is None else self.handled.seconds
        return handled - (0.0 if self.aws is None else self.aws.waiting_seconds)

    def on_dynamodb(self, round_trip: float) -> float:
        """:attr:`own_seconds` with each AWS call a DynamoDB round trip of ``round_trip`` seconds instead of moto's."""
        return self.own_seconds + (0 if self.aws is None else sum(self.aws.calls.values())) * round_trip


def read_feed(gateway: Gateway) -> Read:
    """The app's first sync: ``transactions/sync`` from no cursor while ``has_more``."""
    ids: set[str] = set()
    added = requests = 0
    query = {"count": str(FEED_COUNT)}
    with aws_calls() as meter, handler_time(gateway, ACCOUNTS_FUNCTION) as handled:
        cpu, start = time.process_time(), time.perf_counter()
        while True:
            status, body, _ = gateway.call("GET", FEED_PATH, sub=BULK_USER, query=query)
            assert status == 200, body
            requests += 1
            assert not body["modified"] and not body["removed"], body
            added += len(body["added"])
            ids.update(item["transaction_id"] for item in body["added"])
            if not body["has_more"]:
                break
            query = {"count": str(FEED_COUNT), "cursor": body["next_cursor"]}
        seconds, cpu_used = time.perf_counter() - start, time.process_time() - cpu
    assert added == len(ids) == TOTAL, (added, len(ids))
    return Read(requests, len(ids), seconds, cpu_used, meter, handled)


def read_live(gateway: Gateway) -> Read:
    cpu = time.process_time()
    done = through_gateway(gateway, all_pages=True, sub=BULK_USER)
    assert done.transactions == TOTAL, done
    return Read(done.requests, done.transactions, done.seconds, time.process_time() - cpu)


def feed_against_live(gateway: Gateway, args: argparse.Namespace, out: IO[str]) -> dict[str, list[Read]]:
    status, _, _ = gateway.call("GET", LIVE_PATH, sub=BULK_USER)  # warm-up: the function loaded, the history built
    assert status == 200
    reads: dict[str, list[Read]] = {"feed": [], "live": []}
    for index in range(args.runs):  # interleaved, so a busy moment of the machine hits both alike
        print(f"  feed and live walk, run {index + 1} of {args.runs}...", file=out, flush=True)
        reads["feed"].append(read_feed(gateway))
        reads["live"].append(read_live(gateway))
    return reads


def profile_feed(gateway: Gateway, out: IO[str]) -> dict[str, float]:
    """Own time of one complete feed read by package, under cProfile (which inflates Python-heavy parts)."""
    totals = profile_by_package(lambda: read_feed(gateway), 1)
    top = sorted(totals.items(), key=lambda item: -item[1])[:15]
    print(f"\nfeed read of {TOTAL}: own time under cProfile by package (ms)", file=out)
    for key, value in top:
        print(f"  {key:44} {value:8.1f}", file=out)
    return {key: round(value, 1) for key, value in top}


# -- the run and its report ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="connections synced by the pool")
    parser.add_argument("--baseline-n", type=int, default=20, help="connections synced one at a time")
    parser.add_argument("--latency-ms", type=int, default=50, help="bank latency for the throughput runs")
    parser.add_argument("--dynamodb-latency-ms", type=float, default=4.0)
    parser.add_argument("--read-latency-ms", type=int, default=20, help="bank latency for the sync's memory and reads")
    parser.add_argument("--runs", type=int, default=3, help="complete reads per path (the median is reported)")
    parser.add_argument("--memory-connections", type=int, default=2, help="Marc connections beside the bulk one")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--feed-only", action="store_true", help="no throughput runs, nothing written to results")
    args = parser.parse_args()
    if min(args.n, args.baseline_n, args.runs) < 1 or args.memory_connections < 0:
        parser.error("--n, --baseline-n and --runs must be positive, --memory-connections >= 0")
    out = quiet_stdout()
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    print("sync: throughput, memory, the stored feed against the live walk...", file=out, flush=True)
    profile: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp,
        bench_stack(latency_ms=args.latency_ms, daily_quota=QUOTA, no_rollback_copy=True) as stack,
    ):
        runs = [] if args.feed_only else throughput(stack, args, out)
        stack.sandbox.admin("POST", "latency", {"ms": args.read_latency_ms, "scope": "any"})
        print(f"  {SYNC_FUNCTION} in its own process...", file=out, flush=True)
        memory = sync_memory(stack, args, Path(tmp))
        reads = feed_against_live(stack.gateway, args, out)
        if args.profile:
            profile = profile_feed(stack.gateway, out)
    report(out, args, runs, memory, reads, profile)
    return 0


def report(  # noqa: PLR0917 - the run's parts, in the order they ran
    out: IO[str],
    args: argparse.Namespace,
    runs: list[Timed],
    memory: dict[str, Any],
    reads: dict[str, list[Read]],
    profile: dict[str, float],
) -> None:
    rows = [run.row() for run in runs]
    lines = [
        "",
        f"sync throughput, bank +{args.latency_ms} ms, model tables +{args.dynamodb_latency_ms:g} ms a DynamoDB call "
        f"(Marc: {len(MARC_ACCOUNTS)} accounts a connection)",
        f"{'run':12} {'workers':>7} {'conns':>5} {'accounts':>8} {'changes':>7} {'seconds':>7} {'accounts/s':>10} "
        f"{'CPU ms/acct':>11}",
    ]
    if not rows:  # --feed-only
        lines = []
    lines += [
        f"{r['run']:12} {r['workers']:7d} {r['connections']:5d} {r['accounts']:8d} {r['changes']:7d} "
        f"{r['seconds']:7.2f} {r['accounts_per_second']:10.1f} {r['cpu_ms_per_account']:11.2f}"
        for r in rows
    ]
    for kind in ("first sync", "later sync") if rows else ():
        pool, one = (r for r in rows if r["run"] == kind)
        speedup = pool["accounts_per_second"] / one["accounts_per_second"]
        lambda_rate = 1000 / pool["cpu_ms_per_account"]  # one GIL-bound process at one vCPU (1769 MB)
        pool["speedup_over_one"] = round(speedup, 1)
        pool["lambda_1769mb_cpu_bound_accounts_per_second"] = round(lambda_rate)
        lines.append(
            f"{kind}: the pool x{speedup:.1f} one at a time; its CPU caps one invocation at ~{lambda_rate:.0f} "
            f"accounts/s at {FULL_VCPU_MB} MB (1 vCPU)"
        )
    peak = memory["peak_mb"]
    summary = memory["summary"]
    lines += [
        "",
        f"{SYNC_FUNCTION}, one scheduled run in its own process ({summary['synced']} connections: the bulk persona's "
        f"{TOTAL} and {args.memory_connections} of Marc's; {summary['added']} added): peak RSS {peak:.1f} MB "
        f"(after init {memory['init_mb']:.1f}) of {memory['memory_mb']} MB, {memory['seconds']:.1f} s  "
        + ("ok" if peak < memory["memory_mb"] else "OVER MemorySize"),
    ]
    feed = statistics.median(read.seconds for read in reads["feed"])
    live = statistics.median(read.seconds for read in reads["live"])
    feed_cpu = statistics.median(read.cpu_seconds for read in reads["feed"])
    waiting = statistics.median(read.aws.waiting_seconds for read in reads["feed"] if read.aws)
    handler_cpu = statistics.median(read.handled.cpu_seconds for read in reads["feed"] if read.handled)
    own = statistics.median(read.own_seconds for read in reads["feed"])
    round_trip = args.dynamodb_latency_ms / 1000
    projected = statistics.median(read.on_dynamodb(round_trip) for read in reads["feed"])
    calls = reads["feed"][0].aws or AwsCalls()
    pages = reads["feed"][0].requests
    speedup = live / feed
    projected_speedup = live / projected
    # The target is judged on our code: moto answers a query in time that grows with the partition (it sorts every
    # item in Python), DynamoDB in time that grows with the page (bench/README.md, Sync).
    verdict = "ok" if projected <= READ_TARGET_SECONDS and projected_speedup >= SPEEDUP_TARGET else "MISSED"
    lines += [
        "",
        f"reading {TOTAL} transactions, median of {args.runs} (bank +{args.read_latency_ms} ms for the live walk):",
        f"  transactions/sync, count={FEED_COUNT}: {pages} invocations, {feed:.3f} s on moto (x{speedup:.1f} live), "
        f"of which {waiting:.3f} s waiting for moto's answers",
        f"  the handler less its wait for moto: {own:.3f} s wall, {handler_cpu:.3f} s CPU "
        f"({1000 * handler_cpu / pages:.1f} ms a page; with the bench's JSON copies and client {feed_cpu:.3f} s); "
        f"AWS calls {dict(sorted(calls.calls.items()))} ({sum(calls.calls.values()) / pages:.1f} a page), "
        f"{calls.items} DynamoDB items, {calls.response_bytes / 1e6:.1f} MB read",
        f"  on DynamoDB (the handler less its wait + each call a {args.dynamodb_latency_ms:g} ms round trip): "
        f"{projected:.3f} s",
        f"  live all=true walk: {reads['live'][0].requests} invocations over 100 bank pages, {live:.3f} s",
        f"  target <= {READ_TARGET_SECONDS} s and >= x{SPEEDUP_TARGET:g} live, judged on DynamoDB's figure: "
        f"{projected:.3f} s, x{projected_speedup:.1f}  {verdict}",
    ]
    print("\n".join(lines), file=out)
    if args.feed_only:
        return
    write_result(
        "sync",
        {
            "throughput": {
                "bank_latency_ms": args.latency_ms,
                "dynamodb_model_latency_ms": args.dynamodb_latency_ms,
                "accounts_per_connection": len(MARC_ACCOUNTS),
                "rows": rows,
            },
            "memory": {
                "function": SYNC_FUNCTION,
                "connections": summary["synced"],
                "added": summary["added"],
                "after_init_mb": round(memory["init_mb"], 1),
                "peak_mb": round(peak, 1),
                "memory_size_mb": memory["memory_mb"],
                "seconds": round(memory["seconds"], 2),
            },
            "feed_read": {
                "transactions": TOTAL,
                "count": FEED_COUNT,
                "bank_latency_ms": args.read_latency_ms,
                "runs": args.runs,
                "feed_seconds": round(feed, 3),
                "feed_all_runs_seconds": [round(read.seconds, 3) for read in reads["feed"]],
                "feed_cpu_seconds": round(feed_cpu, 3),
                "feed_handler_cpu_seconds": round(handler_cpu, 3),
                "feed_handler_cpu_ms_per_page": round(1000 * handler_cpu / pages, 1),
                "feed_waiting_for_moto_seconds": round(waiting, 3),
                "feed_handler_less_wait_seconds": round(own, 3),
                "feed_aws_calls": dict(sorted(calls.calls.items())),
                "feed_dynamodb_items": calls.items,
                "feed_response_bytes": calls.response_bytes,
                "dynamodb_round_trip_ms": args.dynamodb_latency_ms,
                "feed_on_dynamodb_seconds": round(projected, 3),
                "speedup_on_dynamodb": round(projected_speedup, 1),
                "feed_invocations": pages,
                "live_all_true_seconds": round(live, 3),
                "live_all_runs_seconds": [round(read.seconds, 3) for read in reads["live"]],
                "live_invocations": reads["live"][0].requests,
                "speedup_on_moto": round(speedup, 1),
                "target_seconds": READ_TARGET_SECONDS,
                "target_speedup": SPEEDUP_TARGET,
                "verdict": verdict,
                "feed_own_ms_by_package_under_cprofile": profile,
            },
        },
        out,
    )


if __name__ == "__main__":
    sys.exit(main())
