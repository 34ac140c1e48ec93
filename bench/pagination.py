"""Pagination: 10,000 transactions over 100 bank pages, wall time against pages x the bank's latency.

The account is the sandbox's large-history persona (``D0999997I0``: exactly 10,000 transactions, 100 pages of 100),
connected through the real journey; the sandbox runs in its own process with ``--latency-ms`` (20 ms) added to
every call, moto in another (``bench.harness``). Three ways to read the whole history, each timed from the first
request to the last transaction:

* gateway, cursors: what a fintech's app does with ``GET .../transactions`` and no ``limit``: one AccountsFunction
  invocation per bank page, each answer's ``next_cursor`` passed back as ``?cursor=`` until it is null (100
  invocations: each reads the connection from DynamoDB, opens the sealed cursor, calls the bank, seals the next);
* gateway, ``all=true``: the handler follows the bank's pages itself, up to 5,000 transactions (50 pages) an
  invocation, then returns a cursor (2 invocations);
* direct: ``aisp.stet``'s ``iter_transaction_pages`` following the bank's ``_links.next`` (the floor: the bank's
  own latency, signing and parsing).

Before anything is timed, one page is read through each path (the sandbox builds the history, the function is warm).
Reported: wall time, the floor ``pages x latency``, and the time per page beyond the injected latency.

Usage: python -m bench.pagination [--latency-ms 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from bench.harness import BANK, BULK, BULK_ACCOUNT, PSU_IP, USER_AGENT, Gateway, bench_stack, quiet_stdout, write_result

USER = "bench-pages"
TOTAL = 10_000
PAGES = 100
PATH = f"/v1/connections/{BANK}/accounts/{BULK_ACCOUNT}/transactions"


@dataclass
class Read:
    """One complete read of the history."""

    requests: int
    pages: int
    transactions: int
    seconds: float


def through_gateway(gateway: Gateway, *, all_pages: bool, sub: str = USER) -> Read:
    """Follow ``next_cursor`` from the first call to null, as the fintech's app does."""
    query: dict[str, str] = {"all": "true"} if all_pages else {}
    references: set[str] = set()
    requests = 0
    start = time.perf_counter()
    while True:
        status, body, _ = gateway.call("GET", PATH, sub=sub, query=query)
        assert status == 200, body
        requests += 1
        references.update(item["id"] for item in body["transactions"])
        if body["next_cursor"] is None:
            break
        query = {"cursor": body["next_cursor"], **({"all": "true"} if all_pages else {})}
    seconds = time.perf_counter() - start
    return Read(requests=requests, pages=PAGES, transactions=len(references), seconds=seconds)


def direct_reader(access: str) -> Callable[[], Read]:
    from aisp import wiring  # noqa: PLC0415
    from aisp.stet.client import PsuContext  # noqa: PLC0415

    client = wiring.bank_clients().get(BANK)
    psu = PsuContext(ip_address=PSU_IP, http_method="GET", user_agent=USER_AGENT, accept="application/json")

    def read() -> Read:
        start = time.perf_counter()
        references: set[str] = set()
        pages = 0
        for page in client.iter_transaction_pages(access, BULK_ACCOUNT, psu=psu, max_pages=PAGES + 1):
            pages += 1
            references.update(str(item.entry_reference) for item in page.transactions)
        seconds = time.perf_counter() - start
        return Read(requests=pages, pages=pages, transactions=len(references), seconds=seconds)

    return read


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3, help="complete reads per path (the median is reported)")
    args = parser.parse_args()
    if args.runs < 1 or args.latency_ms < 0:
        parser.error("--runs must be positive, --latency-ms at least 0")
    out = quiet_stdout()
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    print(f"pagination: {TOTAL} transactions, {PAGES} pages, {args.runs} runs per path...", file=out, flush=True)
    with bench_stack(latency_ms=args.latency_ms) as stack:
        gateway = stack.gateway
        gateway.connect(sub=USER, identifier=BULK)
        from aisp import wiring  # noqa: PLC0415
        from aisp.dal import DynamoConnectionRepository  # noqa: PLC0415

        _, tokens = DynamoConnectionRepository(cipher=wiring.token_cipher).get_with_tokens(USER, BANK)
        assert tokens is not None
        direct = direct_reader(tokens.access_token.get_secret_value())
        status, _, _ = gateway.call("GET", PATH, sub=USER)  # warm-up: history built, function warm
        assert status == 200
        paths: dict[str, Callable[[], Read]] = {
            "gateway, next_cursor (no limit)": lambda: through_gateway(gateway, all_pages=False),
            "gateway, all=true": lambda: through_gateway(gateway, all_pages=True),
            "direct aisp.stet, _links.next": direct,
        }
        reads: dict[str, list[Read]] = {name: [] for name in paths}
        for _ in range(args.runs):  # interleaved, so a busy moment of the machine hits every path alike
            for name, read in paths.items():
                done = read()
                assert done.transactions == TOTAL, (name, done)
                reads[name].append(done)
    report(out, args, reads)
    return 0


def report(out: IO[str], args: argparse.Namespace, reads: dict[str, list[Read]]) -> None:
    floor = PAGES * args.latency_ms / 1000
    lines = [
        f"pagination, {TOTAL} transactions in {PAGES} bank pages, sandbox latency {args.latency_ms} ms, "
        f"median of {args.runs} runs, {os.cpu_count()} CPUs",
        f"{'path':34} {'requests':>8} {'pages':>5} {'seconds':>8} {'pages x lat':>11} {'x floor':>7} "
        f"{'ms/page over lat':>16}",
    ]
    rows: list[dict[str, Any]] = []
    for name, runs in reads.items():
        seconds = statistics.median(run.seconds for run in runs)
        per_page = 1000 * (seconds - floor) / PAGES
        rows.append(
            {
                "path": name,
                "requests": runs[0].requests,
                "pages": runs[0].pages,
                "transactions": runs[0].transactions,
                "seconds": round(seconds, 3),
                "all_runs_seconds": [round(run.seconds, 3) for run in runs],
                "pages_x_latency_seconds": floor,
                "ratio_to_floor": round(seconds / floor, 2) if floor else None,
                "ms_per_page_beyond_latency": round(per_page, 2),
            }
        )
        ratio = f"{seconds / floor:7.2f}" if floor else f"{'-':>7}"
        lines.append(
            f"{name:34} {runs[0].requests:8d} {runs[0].pages:5d} {seconds:8.2f} {floor:11.2f} {ratio} {per_page:16.2f}"
        )
    direct = statistics.median(run.seconds for run in reads["direct aisp.stet, _links.next"])
    cursors = statistics.median(run.seconds for run in reads["gateway, next_cursor (no limit)"])
    lines.append(
        f"the gateway's cursor walk adds {1000 * (cursors - direct) / PAGES:.1f} ms a page to the direct client's\n"
        "(one invocation per page: DynamoDB read on moto, cursor open/seal, our models and JSON)"
    )
    print("\n".join(lines), file=out)
    write_result(
        "pagination",
        {"transactions": TOTAL, "pages": PAGES, "bank_latency_ms": args.latency_ms, "runs": args.runs, "rows": rows},
        out,
    )


if __name__ == "__main__":
    sys.exit(main())
