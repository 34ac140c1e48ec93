"""Peak memory of each function: its real handler in a process of its own, like a Lambda container, vs MemorySize.

For each function of template.yaml, this process (the harness: moto and the sandbox in their own processes,
``bench.harness``) prepares the state and the events of a workload, then starts a fresh interpreter that does what
the Lambda runtime does and nothing else: the function's template environment, its folder and the layer on
``sys.path``, ``import app`` (the init), then ``lambda_handler(event, context)`` for every event in turn. The child
reports its peak resident set before the import, after it and after the last invocation (the peak), and every
answer's status. The peak is ``VmHWM`` from ``/proc/self/status`` (``ru_maxrss`` where there is none): Linux carries
``ru_maxrss`` over ``execve``, so a child of this harness would report the harness's own size.

Workloads (each repeated ``--rounds`` times, 3):

* connect: ``GET /v1/banks``, ``POST /v1/connections``, ``GET /v1/connections``;
* oauth_callback: the callbacks of logins made at the sandbox's screens just before (one per round);
* consents: ``PUT /v1/connections/13807/consent`` (a new ``Idempotency-Key`` each time);
* accounts: accounts, balances, a transactions page, ``GET /v1/accounts``, identity, beneficiaries, and
  ``all=true`` on the 10,000-transaction account (5,000 transactions in one answer: the largest there is);
* token_refresher: one scheduled run refreshing ``--connections`` (200) due connections (32 threads).

Budget: peak RSS under the function's MemorySize (a Lambda over its memory is killed). Writes
bench/results/memory.json.

Usage: python -m bench.memory [--rounds 3] [--connections 200]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.harness import Gateway, Stack

CHILD_FLAG = "--child"


# -- the child: a Lambda container running one function ------------------------------------------------------------


class Context:
    """The Lambda context attributes the handlers and Powertools read."""

    def __init__(self, spec: dict[str, Any]) -> None:
        name = f"aisp-bench-{spec['function']}"
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:eu-west-3:123456789012:function:{name}"
        self.memory_limit_in_mb = int(spec["memory_mb"])
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "bench"
        self._deadline = time.monotonic() + int(spec["timeout_seconds"])

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _rss_mb() -> float:
    """This program's peak resident set so far (MB): ``VmHWM``, else ``ru_maxrss``.

    Linux keeps ``ru_maxrss`` across ``execve``: a child forked from this 130 MB harness would start at 130 MB.
    ``VmHWM`` (``/proc/self/status``) is the high-water mark of the new program's own address space.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def child(spec_path: Path, result_path: Path) -> int:
    """Run one function's events, as its Lambda container would, and write what memory it took."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    baseline = _rss_mb()
    os.environ.update(spec["environment"])
    sys.path[:0] = [spec["code_dir"], spec["layer_dir"]]
    sys.stdout = Path(os.devnull).open("w", encoding="utf-8")  # noqa: SIM115 - the logs, as they go to CloudWatch
    start = time.perf_counter()
    import app  # type: ignore[import-not-found]  # noqa: PLC0415 - the function's own module, as Lambda imports it

    init = _rss_mb()
    answers: list[Any] = []
    for event in spec["events"]:
        result = app.lambda_handler(json.loads(json.dumps(event)), Context(spec))
        json.dumps(result)  # the runtime serializes the answer
        if isinstance(result, dict) and "statusCode" in result:
            answers.append(result["statusCode"])
        elif isinstance(result, dict) and "runs" in result:  # the refresher's runs
            answers.append({"refreshed": sum(run.get("refreshed", 0) for run in result["runs"])})
        else:  # a scheduled run's summary (counts only)
            answers.append(result)
    result_path.write_text(
        json.dumps(
            {
                "baseline_mb": baseline,
                "init_mb": init,
                "peak_mb": _rss_mb(),
                "answers": answers,
                "seconds": time.perf_counter() - start,
            }
        ),
        encoding="utf-8",
    )
    return 0


# -- the parent: state, events, one child per function ------------------------------------------------------------


def run_child(gateway: Gateway, function: str, events: list[dict[str, Any]], tmp: Path) -> dict[str, Any]:
    from bench.harness import ROOT, child_env  # noqa: PLC0415

    spec = gateway.app.functions[function]
    spec_path, result_path = tmp / f"{function}.json", tmp / f"{function}.result.json"
    spec_path.write_text(
        json.dumps(
            {
                "function": function,
                "code_dir": str(spec.code_dir),
                "layer_dir": str(ROOT / "layers" / "aisp"),
                "memory_mb": spec.memory_mb,
                "timeout_seconds": spec.timeout_seconds,
                "environment": gateway.environment,
                "events": events,
            }
        ),
        encoding="utf-8",
    )
    env = {key: value for key, value in child_env().items() if key != "PYTHONPATH"}
    subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "bench.memory", CHILD_FLAG, str(spec_path), str(result_path)],
        cwd=ROOT,
        env=env,
        check=True,
    )
    result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
    return {**result, "memory_mb": spec.memory_mb}


def connect_events(gateway: Gateway, rounds: int) -> list[dict[str, Any]]:
    from bench.harness import BANK, RETURN_URL  # noqa: PLC0415

    events = []
    for index in range(rounds):
        sub = f"mem-connect-{index}"
        events += [
            gateway.event("GET", "/v1/banks", sub=sub)[1],
            gateway.event("POST", "/v1/connections", sub=sub, body={"bank_code": BANK, "return_url": RETURN_URL})[1],
            gateway.event("GET", "/v1/connections", sub=sub)[1],
        ]
    return events


def consent_events(gateway: Gateway, rounds: int, sub: str) -> list[dict[str, Any]]:
    from bench.harness import BANK, MARC_IBANS  # noqa: PLC0415

    body = {"balances": list(MARC_IBANS), "transactions": list(MARC_IBANS[:2]), "psu_identity": True}
    body["trusted_beneficiaries"] = True
    return [
        gateway.event(
            "PUT",
            f"/v1/connections/{BANK}/consent",
            sub=sub,
            body=body,
            headers={"idempotency-key": f"bench-memory-{uuid.uuid4()}"},
        )[1]
        for _ in range(rounds)
    ]


def account_events(gateway: Gateway, rounds: int, marc: str, bulk: str) -> list[dict[str, Any]]:
    from bench.harness import BANK, BULK_ACCOUNT, MARC_ACCOUNTS  # noqa: PLC0415

    base = f"/v1/connections/{BANK}"
    requests: list[tuple[str, str, dict[str, str]]] = [
        (marc, f"{base}/accounts", {}),
        *((marc, f"{base}/accounts/{account}/balances", {}) for account in MARC_ACCOUNTS),
        (marc, f"{base}/accounts/{MARC_ACCOUNTS[0]}/transactions", {}),
        (marc, "/v1/accounts", {}),
        (marc, f"{base}/identity", {}),
        (marc, f"{base}/trusted-beneficiaries", {}),
        (bulk, f"{base}/accounts/{BULK_ACCOUNT}/transactions", {"all": "true"}),
    ]
    return [gateway.event("GET", path, sub=sub, query=query)[1] for _ in range(rounds) for sub, path, query in requests]


def seed_due_connections(stack: Stack, count: int) -> None:
    """``count`` connections whose access token expires within the refresher's margin (tokens minted in bulk)."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415

    from pydantic import SecretStr  # noqa: PLC0415

    from aisp import wiring  # noqa: PLC0415
    from aisp.dal import DynamoConnectionRepository  # noqa: PLC0415
    from aisp.models.connection import TokenPair  # noqa: PLC0415
    from bench.harness import BANK  # noqa: PLC0415

    repo = DynamoConnectionRepository(cipher=wiring.token_cipher)
    now = datetime.now(UTC).replace(microsecond=0)

    def store(indexed: tuple[int, tuple[str, str]]) -> None:
        index, (access, refresh) = indexed
        repo.activate(
            user_id=f"mem-refresh-{index:04d}",
            bank_code=BANK,
            connection_id=f"cn_mem-refresh-{index:04d}",
            expected_version=None,
            tokens=TokenPair(access_token=SecretStr(access), refresh_token=SecretStr(refresh)),
            access_expires_at=now + timedelta(minutes=5),
            reauth_due_at=now + timedelta(days=90),
            now=now,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(store, enumerate(stack.sandbox.mint(count))))


def measure(stack: Stack, args: argparse.Namespace, tmp: Path, out: IO[str]) -> dict[str, dict[str, Any]]:
    from bench.harness import BULK, ROOT  # noqa: PLC0415

    gateway = stack.gateway
    results: dict[str, dict[str, Any]] = {}

    def run(function: str, events: list[dict[str, Any]]) -> None:
        print(f"  {function}: {len(events)} invocations...", file=out, flush=True)
        results[function] = run_child(gateway, function, events, tmp)

    run("ConnectFunction", connect_events(gateway, args.rounds))
    logins = [gateway.start_login(sub=f"mem-callback-{index}") for index in range(args.rounds)]
    run("OAuthCallbackFunction", [gateway.callback_event(query)[1] for query in logins])
    # The callbacks' code exchanges revoked each other's tokens (one pair per PSU): connect afresh.
    gateway.connect(sub="mem-marc")
    gateway.connect(sub="mem-bulk", identifier=BULK)
    run("ConsentsFunction", consent_events(gateway, args.rounds, "mem-marc"))
    run("AccountsFunction", account_events(gateway, args.rounds, "mem-marc", "mem-bulk"))
    seed_due_connections(stack, args.connections)
    scheduled = json.loads((ROOT / "events" / "token_refresher" / "scheduled.json").read_text(encoding="utf-8"))
    run("TokenRefresherFunction", [scheduled])
    return results


def check(results: dict[str, dict[str, Any]], connections: int) -> None:
    """Every answer is the expected one, so the memory is that of the real work."""
    expected = {
        "ConnectFunction": {200, 201},
        "OAuthCallbackFunction": {302},
        "ConsentsFunction": {200},
        "AccountsFunction": {200},
    }
    for function, statuses in expected.items():
        answers = set(results[function]["answers"])
        assert answers <= statuses, (function, results[function]["answers"])
    refreshed = results["TokenRefresherFunction"]["answers"][0]["refreshed"]
    assert refreshed == connections, results["TokenRefresherFunction"]


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == CHILD_FLAG:  # noqa: PLR2004 - flag + two paths
        return child(Path(sys.argv[2]), Path(sys.argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=200, help="due connections for the refresher's run")
    args = parser.parse_args()
    if args.rounds < 1 or args.connections < 1:
        parser.error("--rounds and --connections must be positive")
    from bench.harness import bench_stack, quiet_stdout  # noqa: PLC0415

    out = quiet_stdout()
    print("memory: each function's handler in its own process...", file=out, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp, bench_stack(latency_ms=0) as stack:
        results = measure(stack, args, Path(tmp), out)
    check(results, args.connections)
    report(out, args, results)
    return 0


def report(out: IO[str], args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    from bench.harness import write_result  # noqa: PLC0415

    lines = [
        f"memory: peak RSS (VmHWM) of each function's handler in its own process, {args.rounds} rounds (MB)",
        f"{'function':24} {'calls':>5} {'interp.':>7} {'after init':>10} {'peak':>7} {'MemorySize':>10} "
        f"{'% used':>6}  verdict",
    ]
    rows = []
    for function, result in results.items():
        share = 100 * result["peak_mb"] / result["memory_mb"]
        verdict = "ok" if result["peak_mb"] < result["memory_mb"] else "OVER MemorySize"
        rows.append(
            {
                "function": function,
                "invocations": len(result["answers"]),
                "interpreter_mb": round(result["baseline_mb"], 1),
                "after_init_mb": round(result["init_mb"], 1),
                "peak_mb": round(result["peak_mb"], 1),
                "memory_size_mb": result["memory_mb"],
                "percent_of_memory_size": round(share, 1),
                "seconds": round(result["seconds"], 2),
                "verdict": verdict,
            }
        )
        lines.append(
            f"{function:24} {len(result['answers']):5d} {result['baseline_mb']:7.1f} {result['init_mb']:10.1f} "
            f"{result['peak_mb']:7.1f} {result['memory_mb']:10d} {share:6.1f}  {verdict}"
        )
    lines.append("interp. = the bare interpreter before the import; Lambda's own runtime adds its share on top")
    print("\n".join(lines), file=out)
    write_result("memory", {"rounds": args.rounds, "refresher_connections": args.connections, "rows": rows}, out)


if __name__ == "__main__":
    sys.exit(main())
