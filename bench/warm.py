"""Warm overhead: a gateway call through the handler against the same signed bank call made directly.

Two routes, GET accounts and GET transactions (first page, 100 transactions; and a complete listing, the last page
from a ``date_from``, which also asks the store whether a sync keeps the account), for persona Marc connected through
the real journey (connect handler, the bank's screens, callback handler). The bank is the offline sandbox in its own
process with ``--latency-ms`` (20 ms) added to every call; DynamoDB, KMS and Secrets Manager are a moto server in
another process (``bench.harness``).

* handler: the AccountsFunction's ``lambda_handler`` with the API Gateway payload 2.0 event the HTTP API sends,
  through ``local.adapter.FunctionRuntime`` (the runtime's JSON decoding of the event and encoding of the answer
  included): JWT ``sub``, connection read from DynamoDB, tokens opened (AES-GCM, data key cached per container),
  the signed mTLS call, the answer mapped to our models and JSON (and the next-page cursor sealed). The read runs
  beside the bank call once the container has read this connection before (``aisp.logic.remembered``); a third
  row clears that memory before each call, as for the first query of a connection in a fresh container;
* direct: the same call with ``aisp.stet`` (``wiring.bank_clients``: same keep-alive session, same signer, same PSU
  headers) and the access token in hand, its answer parsed into the STET models.

The two alternate call by call (the order flips every call) after ``--warmup`` untimed calls each, so a busy moment
of the machine hits both alike. Budget: the gateway adds under 3 ms p50 to the bank's own latency (handler p50 -
direct p50). The handler's one DynamoDB read is also timed alone (moto's share of the difference), and each path's
CPU in this process: the guide's budget is a warm call adding under 2 ms of CPU to the bank's own call. Then
``--profile-calls`` calls of each path run under cProfile, and the own time per call is summed by package, handler
minus direct: where the handler's extra time goes. cProfile charges every Python call, so it inflates call-heavy
code (routing, botocore's event hooks) several times over: it says where to look, the CPU column what it costs.

A last row weighs the unattended-access ledger: the same GET accounts with the fintech backend's server token (a unit
reserved with one conditional UpdateItem before the bank call; the sandbox and the registry allow 1,000,000 a day
here) against the attended call, and the reservation alone on the moto server. Target: the ledger adds <= 1 ms p50.

``--parts`` splits GET accounts' added CPU instead: the handler with the use case answering from memory (framework),
the connection's read alone, and the rest (the use case's own work). ``--rows accounts,transactions`` runs only
those rows (names: accounts, transactions, complete, first, ledger), for comparing two trees run after run.
``--xray`` turns X-Ray on as on Lambda (the harness runs without it, having no daemon).
``--connection-per-call`` runs moto as shipped (a TCP connection per AWS call) instead of kept alive.

Usage: python -m bench.warm [--calls 500] [--warmup 30] [--latency-ms 20] [--profile-calls 100] [--rows ...]
[--parts] [--xray] [--connection-per-call]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from bench.harness import (
    BANK,
    MARC_ACCOUNTS,
    PSU_IP,
    USER_AGENT,
    Gateway,
    bench_stack,
    free_port,
    percentile,
    quiet_stdout,
    write_result,
)

BUDGET_MS = 3.0
CPU_BUDGET_MS = 2.0
ROWS = ("accounts", "transactions", "complete", "first", "ledger")
LEDGER_TARGET_MS = 1.0
QUOTA = 1_000_000  # unattended reads a day for the bench (BPCE's is 4)
ACCOUNTS_FUNCTION = "AccountsFunction"
FULL_VCPU_MB = 1769  # Lambda allocates CPU in proportion to memory: one full vCPU at 1769 MB
USER = "bench-warm-marc"


@dataclass
class Case:
    """One route: the handler call and the direct call it is compared with."""

    name: str
    handler: Callable[[], Any]
    direct: Callable[[], Any]


@dataclass
class Timings:
    """Wall and CPU milliseconds of one path's calls."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def time(self, call: Callable[[], Any], *, keep: bool) -> None:
        cpu, start = time.process_time(), time.perf_counter()
        call()
        wall, cpu_used = (time.perf_counter() - start) * 1000, (time.process_time() - cpu) * 1000
        if keep:
            self.wall.append(wall)
            self.cpu.append(cpu_used)


@dataclass
class Row:
    """The timings of one case."""

    name: str
    handler: Timings
    direct: Timings
    read: Timings

    def stats(self) -> dict[str, float]:
        def p(samples: list[float], fraction: float) -> float:
            return round(percentile(samples, fraction), 2)

        return {
            "handler_p50_ms": p(self.handler.wall, 0.5),
            "handler_p95_ms": p(self.handler.wall, 0.95),
            "direct_p50_ms": p(self.direct.wall, 0.5),
            "direct_p95_ms": p(self.direct.wall, 0.95),
            "ratio_p50": round(percentile(self.handler.wall, 0.5) / percentile(self.direct.wall, 0.5), 3),
            "added_p50_ms": p(self.handler.wall, 0.5) - p(self.direct.wall, 0.5),
            "added_p95_ms": p(self.handler.wall, 0.95) - p(self.direct.wall, 0.95),
            "dynamodb_read_p50_ms": p(self.read.wall, 0.5),
            "handler_cpu_ms": round(statistics.mean(self.handler.cpu), 2),
            "direct_cpu_ms": round(statistics.mean(self.direct.cpu), 2),
            "dynamodb_read_cpu_ms": round(statistics.mean(self.read.cpu), 2),
        }


def unlimited_quota() -> None:
    """Lift the registry's unattended limit for this process: the unattended row makes hundreds of reads a day (the
    sandbox is started with as large a quota). The ledger still makes its conditional write on every read."""
    from aisp import wiring  # noqa: PLC0415
    from aisp.banks import BankRegistry  # noqa: PLC0415

    banks = [
        bank.model_copy(update={"capabilities": bank.capabilities.model_copy(update={"unattended_daily_limit": QUOTA})})
        for bank in wiring.registry().banks
    ]
    wiring.registry.provide(BankRegistry(banks))
    wiring.connection_services.reset()
    wiring.account_services.reset()


def tracing_on() -> None:
    """X-Ray on, as on Lambda: the SDK in Lambda mode under one sampled trace, emitting to a daemon address where
    nothing listens (UDP: the datagrams are sent and dropped). Call before the first handler runs (the tracer is
    built then); the harness's environment turns tracing off, since ``make run`` has no daemon."""
    os.environ.pop("POWERTOOLS_TRACE_DISABLED", None)
    os.environ.update(
        {
            "LAMBDA_TASK_ROOT": str(Path(__file__).resolve().parent),
            "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{free_port()}",
            "_X_AMZN_TRACE_ID": "Root=1-6753a5c0-0f1e2d3c4b5a69788796a5b4;Parent=53995c3f42cd8ad8;Sampled=1",
        }
    )


def cases(gateway: Gateway) -> tuple[dict[str, Case], Callable[[], Any], Callable[[], Any], Case]:
    """The routes; the handler's one DynamoDB read (the connection and its tokens) on its own; and the ledger's one
    conditional write (an unattended read's unit) on its own."""
    from aisp import wiring  # noqa: PLC0415
    from aisp.dal import DynamoConnectionRepository  # noqa: PLC0415
    from aisp.models.quota import QuotaKey, QuotaMethod  # noqa: PLC0415
    from aisp.stet.client import PsuContext  # noqa: PLC0415

    repo = DynamoConnectionRepository(cipher=wiring.token_cipher)
    _, tokens = repo.get_with_tokens(USER, BANK)
    assert tokens is not None
    access = tokens.access_token.get_secret_value()
    client = wiring.bank_clients().get(BANK)
    # What the accounts handler sends for these events (PSU-* from the app's headers and the source IP).
    psu = PsuContext(
        ip_address=PSU_IP, http_method="GET", user_agent=USER_AGENT, accept="application/json", accept_language="fr-FR"
    )
    accounts_path = f"/v1/connections/{BANK}/accounts"
    transactions_path = f"{accounts_path}/{MARC_ACCOUNTS[0]}/transactions"
    accounts_fn, accounts_event = gateway.event("GET", accounts_path, sub=USER)
    _, unattended_event = gateway.event(
        "GET", accounts_path, sub="bench-backend", scopes=("aisp/unattended",), headers={"aisp-user": USER}
    )
    transactions_fn, transactions_event = gateway.event("GET", transactions_path, sub=USER)
    accounts_runtime, transactions_runtime = gateway.runtime(accounts_fn), gateway.runtime(transactions_fn)

    def handler_accounts() -> None:
        result = accounts_runtime.invoke(accounts_event)
        assert result["statusCode"] == 200, result

    def handler_transactions() -> None:
        result = transactions_runtime.invoke(transactions_event)
        assert result["statusCode"] == 200, result

    def handler_accounts_unattended() -> None:
        result = accounts_runtime.invoke(unattended_event)
        assert result["statusCode"] == 200, result
        assert "RateLimit" in result["headers"]

    ledger = wiring.quota_ledger()
    spare = QuotaKey(BANK, USER, "bench-spare-account", QuotaMethod.BALANCES, date.today())
    expires = datetime.now(UTC) + timedelta(days=2)

    def reserve() -> None:
        assert ledger.reserve(spare, limit=QUOTA, expires_at=expires) is not None

    def handler_accounts_not_remembered() -> None:
        # The first query of a (user, bank) in a container: the connection is read before the bank is called.
        remembered = wiring.account_services().remembered
        assert remembered is not None
        remembered.clear()
        handler_accounts()

    def direct_accounts() -> None:
        assert len(client.get_accounts(access, psu).accounts) == 3

    def direct_transactions() -> None:
        assert len(client.get_transactions_page(access, MARC_ACCOUNTS[0], psu=psu).transactions) == 100

    def read() -> None:
        assert repo.get_with_tokens(USER, BANK)[1] is not None

    routes = {
        "accounts": Case("GET accounts", handler_accounts, direct_accounts),
        "transactions": Case("GET transactions (100)", handler_transactions, direct_transactions),
        "complete": listing_case(
            gateway,
            transactions_runtime,
            lambda since: client.get_transactions_page(access, MARC_ACCOUNTS[0], psu=psu, date_from=since),
        ),
        "first": Case("GET accounts, first call", handler_accounts_not_remembered, direct_accounts),
    }
    return routes, read, reserve, Case("unattended GET accounts", handler_accounts_unattended, handler_accounts)


def listing_case(gateway: Gateway, runtime: Any, direct_page: Callable[[date], Any]) -> Case:
    """A complete listing (the last page from a ``date_from``): the store is asked whether a sync keeps the account
    (this connection was never synced), beside the bank call."""
    from aisp.models.quota import paris_day  # noqa: PLC0415

    recent = paris_day(datetime.now(UTC)) - timedelta(days=2)
    path = f"/v1/connections/{BANK}/accounts/{MARC_ACCOUNTS[0]}/transactions"
    _, event = gateway.event("GET", path, sub=USER, query={"date_from": recent.isoformat()})

    def handler() -> None:
        result = runtime.invoke(event)
        assert result["statusCode"] == 200, result
        assert '"next_cursor":null' in result["body"].replace(" ", ""), "not the last page"

    def direct() -> None:
        page = direct_page(recent)
        assert page.transactions and page.next_url is None

    return Case("GET transactions, complete", handler, direct)


def cpu_per_call(paths: dict[str, Callable[[], Any]], calls: int, warmup: int) -> dict[str, float]:
    """Mean CPU ms a call of each path, the paths alternating call by call (as in :func:`measure`)."""
    spent = dict.fromkeys(paths, 0.0)
    items = list(paths.items())
    for index in range(warmup + calls):
        shift = index % len(items)
        for name, call in items[shift:] + items[:shift]:
            started = time.process_time()
            call()
            if index >= warmup:
                spent[name] += time.process_time() - started
    return {name: total * 1000 / calls for name, total in spent.items()}


def parts(case: Case, read: Callable[[], Any], calls: int, warmup: int, out: IO[str]) -> dict[str, float]:
    """GET accounts' added CPU in three parts: the handler with the use case answering from memory (the runtime's
    JSON, the decorators, routing, validation, the answer's JSON), the connection's read alone, and the rest (the use
    case's own work: the read's thread, metrics, audit line, models)."""
    from aisp.logic import accounts  # noqa: PLC0415

    answer = accounts.list_accounts
    canned = case.handler  # warm the route, then answer every call with its first result
    captured: list[Any] = []

    def remembered_answer(*args: Any, **kwargs: Any) -> Any:
        if not captured:
            captured.append(answer(*args, **kwargs))
        return captured[0]

    accounts.list_accounts = remembered_answer
    try:
        canned()
        framework = cpu_per_call({"framework": canned}, calls, warmup)["framework"]
    finally:
        accounts.list_accounts = answer
    spent = cpu_per_call({"handler": case.handler, "direct": case.direct, "read": read}, calls, warmup)
    added = spent["handler"] - spent["direct"]
    result = {
        "added_cpu_ms": round(added, 3),
        "framework_cpu_ms": round(framework, 3),
        "read_cpu_ms": round(spent["read"], 3),
        "use_case_rest_cpu_ms": round(added - framework - spent["read"], 3),
    }
    print(
        f"\n{case.name}, CPU a call in parts ({calls} calls): added {added:.2f} ms = framework {framework:.2f} "
        f"(runtime JSON, decorators, routing, validation, answer JSON) + the connection's read {spent['read']:.2f} "
        f"+ the use case's own work {result['use_case_rest_cpu_ms']:.2f}",
        file=out,
    )
    return result


def measure(case: Case, read: Callable[[], Any], calls: int, warmup: int) -> Row:
    row = Row(case.name, Timings(), Timings(), Timings())
    paths = [(case.handler, row.handler), (case.direct, row.direct), (read, row.read)]
    for index in range(warmup + calls):
        shift = index % len(paths)  # each path goes first, second and last in turn
        for call, timings in paths[shift:] + paths[:shift]:
            timings.time(call, keep=index >= warmup)
    return row


def _package(filename: str, function: str) -> str:
    """Where a profiled function lives: a package, ``aisp.<module>``, the stdlib, or a builtin's owner."""
    if filename == "~":  # a builtin: '<method 'read' of '_ssl._SSLSocket' objects>'
        owner = re.search(r" of '?([\w.]+)", function)
        return f"[{owner.group(1) if owner else 'builtins'}]"
    path = Path(filename)
    parts = path.parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].removesuffix(".py")
    if "aisp" in parts:
        package = len(parts) - parts[::-1].index("aisp")  # after the last "aisp" (layers/aisp/aisp/...)
        return "aisp." + ".".join(parts[package:]).removesuffix(".py")
    if "main" in parts and parts[-2] in {"local", "bench", "functions", "accounts"}:
        return f"{parts[-2]}/{path.stem}"
    return f"stdlib {path.stem}"


def profile_by_package(call: Callable[[], Any], calls: int) -> dict[str, float]:
    """Own time per call (ms), summed by :func:`_package`, under cProfile (which inflates Python-heavy parts)."""
    import cProfile  # noqa: PLC0415
    import pstats  # noqa: PLC0415

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        call()
    profiler.disable()
    totals: dict[str, float] = {}
    entries: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (filename, _line, function), (_cc, _nc, own, _cum, _callers) in entries.items():
        key = _package(filename, function)
        totals[key] = totals.get(key, 0.0) + own * 1000 / calls
    return totals


def profile(case: Case, calls: int, out: IO[str]) -> dict[str, float]:
    """Own time per call by package, handler minus direct: where the handler's extra time goes."""
    handler, direct = profile_by_package(case.handler, calls), profile_by_package(case.direct, calls)
    extra = {key: handler.get(key, 0.0) - direct.get(key, 0.0) for key in handler.keys() | direct.keys()}
    top = sorted(extra.items(), key=lambda item: -abs(item[1]))[:18]
    print(f"\n{case.name}: own time per call under cProfile, handler - direct (ms), {calls} calls", file=out)
    for key, value in top:
        print(f"  {key:44} {value:7.2f}   (handler {handler.get(key, 0.0):6.2f})", file=out)
    return {key: round(value, 3) for key, value in top}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--profile-calls", type=int, default=100, help="calls per path under cProfile (0: none)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, among {', '.join(ROWS)}")
    parser.add_argument("--xray", action="store_true", help="X-Ray on, as on Lambda (a daemon address, no daemon)")
    parser.add_argument("--parts", action="store_true", help="GET accounts' added CPU in parts, then stop")
    parser.add_argument(
        "--connection-per-call", action="store_true", help="moto as shipped: a new TCP connection for every AWS call"
    )
    args = parser.parse_args()
    if args.calls < 2 or args.warmup < 0 or args.profile_calls < 0:
        parser.error("--calls must be at least 2, --warmup and --profile-calls at least 0")
    chosen = [name.strip() for name in args.rows.split(",") if name.strip()]
    if not chosen or any(name not in ROWS for name in chosen):
        parser.error(f"--rows takes names among {', '.join(ROWS)}")
    out = quiet_stdout()
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    print(f"warm overhead: {args.calls} calls per path after {args.warmup} warm-up calls...", file=out, flush=True)
    profiles: dict[str, dict[str, float]] = {}
    keep_alive = not args.connection_per_call
    with bench_stack(latency_ms=args.latency_ms, daily_quota=QUOTA, keep_alive=keep_alive) as stack:
        if args.xray:
            tracing_on()
        stack.gateway.connect(sub=USER)
        unlimited_quota()
        every, read, reserve, unattended = cases(stack.gateway)
        if args.parts:
            print(json.dumps(parts(every["accounts"], read, args.calls, args.warmup, out)), file=out)
            return 0
        routes = [case for name, case in every.items() if name in chosen]
        memory_mb = stack.gateway.app.functions[ACCOUNTS_FUNCTION].memory_mb
        rows = [measure(case, read, args.calls, args.warmup) for case in routes]
        ledger = measure(unattended, reserve, args.calls, args.warmup) if "ledger" in chosen else None
        if args.profile_calls:
            weighed = [*routes, unattended] if ledger is not None else routes
            profiles = {case.name: profile(case, args.profile_calls, out) for case in weighed}
    report(out, args, rows, profiles, memory_mb=memory_mb, ledger=ledger)
    return 0


def report(
    out: IO[str],
    args: argparse.Namespace,
    rows: list[Row],
    profiles: dict[str, dict[str, float]],
    *,
    memory_mb: int,
    ledger: Row | None,
) -> None:
    lines = [
        "",
        f"warm overhead, sandbox latency {args.latency_ms} ms, {args.calls} calls per path, {os.cpu_count()} CPUs "
        f"(ms); budget: the gateway adds < {BUDGET_MS:g} ms p50",
        f"{'route':24} {'handler p50':>11} {'p95':>6} {'direct p50':>10} {'p95':>6} {'ratio':>5} {'added p50':>9} "
        f"{'ddb read':>8} {'CPU h/d':>11}  verdict",
    ]
    results: list[dict[str, Any]] = []
    for row in rows:
        stats = row.stats()
        verdict = "ok" if stats["added_p50_ms"] < BUDGET_MS else "OVER BUDGET"
        results.append({"route": row.name, **stats, "verdict": verdict})
        cpu = f"{stats['handler_cpu_ms']:.1f}/{stats['direct_cpu_ms']:.1f}"
        lines.append(
            f"{row.name:24} {stats['handler_p50_ms']:11.2f} {stats['handler_p95_ms']:6.1f} "
            f"{stats['direct_p50_ms']:10.2f} {stats['direct_p95_ms']:6.1f} {stats['ratio_p50']:5.2f} "
            f"{stats['added_p50_ms']:9.2f} {stats['dynamodb_read_p50_ms']:8.2f} {cpu:>11}  {verdict}"
        )
    moto = (
        "a new TCP connection per call: moto answers Connection: close"
        if args.connection_per_call
        else "over a kept-alive connection, as DynamoDB's: bench.moto_server --keep-alive"
    )
    lines += [
        "added = handler p50 - direct p50; ddb read = the handler's one DynamoDB call (connection + tokens) timed",
        f"alone on the moto server (Python, {moto}). A warm",
        "query of a connection the container has read before makes that read beside the bank call",
        "(aisp.logic.remembered); the first one in a container ('first call') waits for it. CPU h/d = this",
        "process's CPU ms per call, handler / direct (moto, bank: own processes)",
    ]
    share = min(memory_mb, FULL_VCPU_MB) / FULL_VCPU_MB
    for result in results:
        extra_cpu = result["handler_cpu_ms"] - result["direct_cpu_ms"]
        result["added_cpu_ms"] = round(extra_cpu, 2)
        result["cpu_verdict"] = "ok" if extra_cpu < CPU_BUDGET_MS else "OVER BUDGET"
        result["lambda_extra_cpu_ms_estimate"] = round(extra_cpu / share, 1)
        lines.append(
            f"{result['route']}: {extra_cpu:.1f} ms more CPU a call than the direct call "
            f"(budget < {CPU_BUDGET_MS:g}: {result['cpu_verdict']}; the connection's read alone "
            f"{result['dynamodb_read_cpu_ms']:.1f}); at {memory_mb} MB ({share:.2f} vCPU) "
            f"~{extra_cpu / share:.0f} ms of wall time on Lambda"
        )
    print("\n".join(lines), file=out)
    result_json: dict[str, Any] = {
        "calls": args.calls,
        "warmup": args.warmup,
        "bank_latency_ms": args.latency_ms,
        "budget_added_p50_ms": BUDGET_MS,
        "budget_added_cpu_ms": CPU_BUDGET_MS,
        "moto_keep_alive": not args.connection_per_call,
        "accounts_function_memory_mb": memory_mb,
        "rows": results,
        "profile_calls": args.profile_calls,
        "extra_own_ms_per_call_by_package": profiles,
    }
    if ledger is not None:
        result_json["unattended_ledger"] = ledger_report(out, ledger)
    write_result("warm", result_json, out)


def ledger_report(out: IO[str], ledger: Row) -> dict[str, Any]:
    """Print the ledger's lines; its figures for the JSON result."""
    quota = ledger.stats()
    quota_verdict = "ok" if quota["added_p50_ms"] <= LEDGER_TARGET_MS else "OVER TARGET"
    lines = [
        "",
        f"the ledger on an unattended call (GET accounts with a server token, beside the same call attended), "
        f"target <= {LEDGER_TARGET_MS:g} ms p50 added:",
        f"  unattended p50 {quota['handler_p50_ms']:.2f} ms, attended p50 {quota['direct_p50_ms']:.2f} ms: "
        f"added p50 {quota['added_p50_ms']:.2f} ms (p95 {quota['added_p95_ms']:.2f}), "
        f"CPU {quota['handler_cpu_ms'] - quota['direct_cpu_ms']:.2f} ms a call  {quota_verdict}",
        f"  the reservation alone (one conditional UpdateItem on the moto server): p50 "
        f"{quota['dynamodb_read_p50_ms']:.2f} ms, {quota['dynamodb_read_cpu_ms']:.2f} ms CPU",
    ]
    print("\n".join(lines), file=out)
    return {
        **quota,
        "target_added_p50_ms": LEDGER_TARGET_MS,
        "verdict": quota_verdict,
        "note": "handler = unattended, direct = attended handler; dynamodb_read = the ledger's reservation",
    }


if __name__ == "__main__":
    sys.exit(main())
