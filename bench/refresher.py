"""Token refresher throughput: N due connections refreshed against the offline sandbox with 50 ms added latency.

Three processes, like the deployed system's three parties: this one runs the refresher as the Lambda does
(``aisp.logic.refresh.scheduler.refresh_due_connections``: its thread pool, the KMS-envelope cipher, the STET client
over HTTPS + mTLS with the per-bank keep-alive session, the EventBridge publisher), the bank is the sandbox in its
own process (``bench.sandbox_host``), and KMS/Secrets Manager/EventBridge are a moto server in a third one.

The connections table: ``--dynamodb model`` (default) is the tests' in-memory repository (``tests/memory.py``: the
DynamoDB repository's conditions over dicts, checked against it by ``tests/contract``) with one simulated round trip
per DynamoDB call (``--dynamodb-latency-ms``, 4 ms); ``--dynamodb moto`` is the real repository (PynamoDB) on the
moto server, whose expression parsing caps any run at a few dozen connections/s (``--fidelity-n N`` adds such a run
after the model one). What the model leaves out, PynamoDB/botocore building and
parsing the two requests of a refresh, is measured apart with stubbed answers and added to the CPU a connection costs:
one GIL-bound process gets at most its memory's share of a vCPU on Lambda, so the report also estimates the rate at
1024 MB and at the template's 1769 MB from that CPU cost.

Connections are seeded before anything is timed: the sandbox mints the token pairs in one request and each is stored
through the repository (encrypted, in the refresh index, access token expiring within the margin). Then, timed:

* the refresher, default policy (32 workers): the N connections;
* the one-at-a-time baseline: the same code with one worker, on a separate set of ``--baseline-n`` connections
  (made due by moving the refresher's clock, so the two sets never mix).

Budget: >= 200 connections/s per invocation (measured here and estimated for Lambda). Writes
bench/results/refresher.json.

Usage: python -m bench.refresher [--n 2000] [--baseline-n 200] [--workers 32] [--latency-ms 50]
                                 [--dynamodb model|moto] [--dynamodb-latency-ms 4] [--fidelity-n 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from bench.harness import BANK, ROOT, MotoProcess, SandboxHost, quiet_stdout, use_layer

BUDGET = 200.0
TABLE = "aisp-connections-bench"
SECRET = "aisp/bank-credentials"  # noqa: S105 - a secret name
LAMBDA_TIMEOUT_SECONDS = 300
SCHEDULE_MINUTES = 5
MAX_INVOCATIONS_PER_RUN = 16  # the fan-out queue's MaximumConcurrency = RefreshDueIndex shards
LAMBDA_MEMORY_MB = 1769  # TokenRefresherFunction's MemorySize in template.yaml
LAMBDA_FULL_VCPU_MB = 1769  # Lambda allocates CPU in proportion to memory: one full vCPU at 1769 MB


class ShiftedClock:
    """The system clock moved by ``offset`` (the baseline set becomes due without waiting)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0) + self.offset


def configure_environment(moto_url: str, sandbox: dict[str, Any], workers: int) -> None:
    """What the template gives TokenRefresherFunction, pointed at moto and the sandbox."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "eu-west-3",
            "AWS_REGION": "eu-west-3",
            "AWS_ENDPOINT_URL": moto_url,
            "POWERTOOLS_SERVICE_NAME": "aisp-gateway",
            "POWERTOOLS_METRICS_NAMESPACE": "AispGatewayBench",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "CONNECTIONS_TABLE_NAME": TABLE,
            "BANK_ENVIRONMENT": "local",
            "BANK_BASE_URL_TEMPLATE": sandbox["api_origin"] + "/{bank_code}",
            "BANK_CA_BUNDLE": sandbox["ca_path"],
            "BANK_CREDENTIALS_SECRET_NAME": SECRET,
            "EVENT_BUS_NAME": "default",
            "REFRESH_MARGIN_MINUTES": "10",
            "REFRESH_WORKERS": str(workers),
        }
    )


def provision(sandbox: dict[str, Any]) -> None:
    import boto3  # noqa: PLC0415

    from aisp.dal.tables import ConnectionRecord  # noqa: PLC0415

    key = boto3.client("kms").create_key(Description="aisp tokens (bench)")["KeyMetadata"]["Arn"]
    os.environ["TOKEN_KEY_ID"] = key
    boto3.client("secretsmanager").create_secret(Name=SECRET, SecretString=json.dumps(sandbox["credentials"]))
    ConnectionRecord.create_table(billing_mode="PAY_PER_REQUEST", wait=True)


def seed(repo: Any, pairs: list[tuple[str, str]], prefix: str, clock: ShiftedClock, expires_in: timedelta) -> list[str]:
    from pydantic import SecretStr  # noqa: PLC0415

    from aisp.models.connection import TokenPair  # noqa: PLC0415

    now = clock.now()

    def store(index: int) -> str:
        access, refresh = pairs[index]
        user = f"{prefix}-{index:05d}"
        repo.activate(
            user_id=user,
            bank_code=BANK,
            connection_id=f"cn_{user}",
            expected_version=None,
            tokens=TokenPair(access_token=SecretStr(access), refresh_token=SecretStr(refresh)),
            access_expires_at=now + expires_in,
            reauth_due_at=now + timedelta(days=90),
            now=now,
        )
        return user

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(store, range(len(pairs))))


@dataclass
class Timed:
    """One timed run."""

    connections: int
    seconds: float
    cpu_seconds: float
    summary: Any

    @property
    def rate(self) -> float:
        return self.connections / self.seconds

    @property
    def cpu_ms_per_connection(self) -> float:
        return 1000 * self.cpu_seconds / self.connections


def timed_run(repo: Any, clock: ShiftedClock, workers: int, run_id: str) -> Timed:
    from aisp import wiring  # noqa: PLC0415
    from aisp.logic.refresh.scheduler import (  # noqa: PLC0415
        RefresherServices,
        RefreshPolicy,
        refresh_due_connections,
    )

    deployed = wiring.refresher_services()
    services = RefresherServices(
        connections=repo, bank=deployed.bank, events=deployed.events, registry=deployed.registry, clock=clock
    )
    policy = RefreshPolicy(workers=workers, time_reserve_seconds=5)
    cpu, start = time.process_time(), time.perf_counter()
    summary = refresh_due_connections(remaining_ms=lambda: 3_600_000, run_id=run_id, services=services, policy=policy)
    elapsed, cpu_used = time.perf_counter() - start, time.process_time() - cpu
    assert summary.failed == 0 and summary.transient_failures == 0, summary
    return Timed(summary.refreshed, elapsed, cpu_used, summary)


def check_tokens(repo: Any, users: list[str]) -> None:
    """A few refreshed connections' new access tokens work at the bank."""
    from aisp import wiring  # noqa: PLC0415
    from aisp.stet.client import PsuContext  # noqa: PLC0415

    for user in users:
        connection, tokens = repo.get_with_tokens(user, BANK)
        assert connection.version == 2 and tokens is not None, user
        accounts = (
            wiring.bank_clients()
            .get(BANK)
            .get_accounts(tokens.access_token.get_secret_value(), PsuContext(ip_address="203.0.113.7"))
        )
        assert accounts.accounts, user


def dal_client_cpu_ms(samples: int = 500) -> float:
    """Client CPU of the real repository's two calls per connection (lease, token write), network left out.

    PynamoDB builds each request, botocore serializes and signs it, and a ``before-send`` hook answers with the
    item DynamoDB would return (``ALL_NEW``), which botocore and PynamoDB then parse: everything the Lambda's CPU does
    for DynamoDB except the socket I/O. The model table leaves this out; it is added back for the Lambda estimate.
    """
    import base64  # noqa: PLC0415

    from botocore.awsrequest import AWSResponse  # noqa: PLC0415
    from pydantic import SecretStr  # noqa: PLC0415

    from aisp import wiring  # noqa: PLC0415
    from aisp.dal import DynamoConnectionRepository, refresh_shard  # noqa: PLC0415
    from aisp.dal.tables import ConnectionRecord  # noqa: PLC0415
    from aisp.models.connection import TokenPair  # noqa: PLC0415
    from aisp.models.refresh import ConnectionKey  # noqa: PLC0415

    repo = DynamoConnectionRepository(cipher=wiring.token_cipher)
    now = datetime.now(UTC).replace(microsecond=0)
    tokens = TokenPair(access_token=SecretStr("a" * 54), refresh_token=SecretStr("r" * 54))
    record = ConnectionRecord(
        "bench-cpu",
        BANK,
        connection_id="cn_bench-cpu",
        status="ACTIVE",
        created_at=now,
        updated_at=now,
        connected_at=now,
        access_expires_at=now + timedelta(minutes=5),
        refresh_issued_at=now,
        reauth_due_at=now + timedelta(days=90),
        tokens=repo._seal(tokens, "bench-cpu", BANK),  # noqa: SLF001
        version=1,
        refresh_shard=refresh_shard("bench-cpu", BANK),
        refresh_due_at=int(now.timestamp()) + 300,
        lease_until=int(now.timestamp()) + 60,
        lease_owner="refresher:bench:1",
    )
    item = record.serialize()
    for value in item.values():
        if "B" in value and isinstance(value["B"], bytes):
            value["B"] = base64.b64encode(value["B"]).decode()
    body = json.dumps({"Attributes": item}).encode()

    class Body:
        def stream(self, **_kwargs: Any) -> Any:
            yield body

    def answer(request: Any, **_kwargs: Any) -> Any:
        headers: Any = {"content-type": "application/x-amz-json-1.0", "x-amzn-requestid": "bench"}
        return AWSResponse(request.url, 200, headers, Body())

    client = ConnectionRecord._get_connection().connection.client  # noqa: SLF001
    client.meta.events.register_first("before-send.dynamodb.UpdateItem", answer)
    key = ConnectionKey("bench-cpu", BANK)
    try:
        leased = None
        for _ in range(50):  # warm-up
            leased = repo.acquire_lease(key, owner="refresher:bench:1", now=now, lease_seconds=60, due_before=2**40)
        assert leased is not None and leased.tokens == tokens
        rounds = []
        for _ in range(3):  # the least noisy of three rounds (other processes share this machine's CPUs)
            start = time.process_time()
            for _ in range(samples):
                leased = repo.acquire_lease(key, owner="refresher:bench:1", now=now, lease_seconds=60, due_before=2**40)
                assert leased is not None
                repo.store_refreshed_tokens(
                    leased.connection,
                    tokens=tokens,
                    access_expires_at=now + timedelta(hours=1),
                    now=now,
                    lease_owner="refresher:bench:1",
                )
            rounds.append(1000 * (time.process_time() - start) / samples)
        return min(rounds)
    finally:
        client.meta.events.unregister("before-send.dynamodb.UpdateItem", answer)


def repository(kind: str, latency_ms: float) -> Any:
    from aisp import wiring  # noqa: PLC0415

    if kind == "moto":
        from aisp.dal import DynamoConnectionRepository  # noqa: PLC0415

        return DynamoConnectionRepository(cipher=wiring.token_cipher)
    from tests.memory import MemoryConnectionRepository  # noqa: PLC0415

    # The deployed cipher (KMS envelope on the moto server), as the real repository would use.
    return MemoryConnectionRepository(wiring.token_cipher(), latency=latency_ms / 1000)


def measure(
    host: SandboxHost, args: argparse.Namespace, kind: str, n: int, baseline_n: int
) -> tuple[Timed, Timed | None]:
    """Seed (not timed), then the refresher on ``n`` connections and the baseline on ``baseline_n``."""
    repo = repository(kind, args.dynamodb_latency_ms)
    clock = ShiftedClock()
    pairs = host.mint(n + baseline_n)
    users = seed(repo, pairs[:n], f"{kind}-bench", clock, timedelta(minutes=5))
    baseline_users = seed(repo, pairs[n:], f"{kind}-base", clock, timedelta(minutes=40))
    refresher = timed_run(repo, clock, args.workers, f"{kind}-refresher")
    assert refresher.connections == n, refresher.summary
    baseline = None
    if baseline_n:
        clock.offset = timedelta(minutes=35)  # the baseline set is due now, the refreshed one is not
        baseline = timed_run(repo, clock, 1, f"{kind}-baseline")
        assert baseline.connections == baseline_n, baseline.summary
    check_tokens(repo, users[:: max(1, n // 5)] + baseline_users[:2])
    return refresher, baseline


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--baseline-n", type=int, default=200)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--dynamodb", choices=("model", "moto"), default="model")
    parser.add_argument("--dynamodb-latency-ms", type=float, default=4.0)
    parser.add_argument("--fidelity-n", type=int, default=0, help="also run N through the real repository on moto")
    args = parser.parse_args()
    if args.n < 1 or args.baseline_n < 1 or args.fidelity_n < 0:
        parser.error("--n and --baseline-n must be positive, --fidelity-n >= 0")

    out = quiet_stdout()  # the gateway's JSON logs: their cost stays, their noise goes
    use_layer()
    fidelity: Timed | None = None
    moto = MotoProcess()
    with tempfile.TemporaryDirectory(prefix="bench-refresher-") as tmp:
        host = SandboxHost(Path(tmp) / "certs")
        try:
            configure_environment(moto.url, host.ready, args.workers)
            provision(host.ready)
            host.admin("POST", "latency", {"ms": args.latency_ms, "scope": "any"})
            print(f"{args.n} + {args.baseline_n} connections on the {args.dynamodb} table...", file=out, flush=True)
            refresher, baseline = measure(host, args, args.dynamodb, args.n, args.baseline_n)
            if args.fidelity_n and args.dynamodb == "model":
                print(f"{args.fidelity_n} connections through the real repository on moto...", file=out, flush=True)
                fidelity, _ = measure(host, args, "moto", args.fidelity_n, 0)
            dal_cpu = dal_client_cpu_ms() if args.dynamodb == "model" else 0.0
        finally:
            host.stop()
            moto.stop()
    assert baseline is not None
    report(out, args, refresher, baseline, fidelity=fidelity, dal_cpu=dal_cpu)
    return 0


def report(
    out: IO[str], args: argparse.Namespace, refresher: Timed, baseline: Timed, *, fidelity: Timed | None, dal_cpu: float
) -> None:
    usable_seconds = LAMBDA_TIMEOUT_SECONDS - 20  # REFRESH_TIME_RESERVE_SECONDS
    # On Lambda the GIL-bound process gets at most the memory's share of a vCPU (1769 MB = 1 vCPU): the rate is the
    # lower of what the threads sustain here and what that CPU share affords at this CPU cost per connection.
    cpu_ms = refresher.cpu_ms_per_connection + dal_cpu
    lambda_rate = {
        mb: min(refresher.rate, (min(mb, LAMBDA_FULL_VCPU_MB) / LAMBDA_FULL_VCPU_MB) * 1000 / cpu_ms)
        for mb in (1024, LAMBDA_MEMORY_MB)
    }
    per_invocation = int(lambda_rate[LAMBDA_MEMORY_MB] * usable_seconds)
    per_hour_single = per_invocation * (60 // SCHEDULE_MINUTES)
    per_hour_fanout = per_hour_single * MAX_INVOCATIONS_PER_RUN
    verdict = "ok" if min(refresher.rate, lambda_rate[LAMBDA_MEMORY_MB]) >= BUDGET else "UNDER BUDGET"
    table = f"{args.dynamodb} table" + (f", {args.dynamodb_latency_ms:g} ms a call" if args.dynamodb == "model" else "")
    lines = [
        f"token refresher, sandbox latency {args.latency_ms} ms, {table}, {os.cpu_count()} CPUs",
        f"{'case':32} {'conns':>6} {'seconds':>8} {'conn/s':>8} {'CPU ms/conn':>12}",
    ]
    rows = [(f"refresher ({args.workers} workers)", refresher, verdict), ("one-at-a-time baseline", baseline, "")]
    if fidelity is not None:
        rows.append(("refresher, real repository/moto", fidelity, "(moto-bound)"))
    for name, run, note in rows:
        lines.append(
            f"{name:32} {run.connections:6d} {run.seconds:8.2f} {run.rate:8.1f} "
            f"{run.cpu_ms_per_connection:12.2f}  {note}"
        )
    lines += [
        f"speed-up x{refresher.rate / baseline.rate:.1f}",
        f"CPU per connection with the real repository: {refresher.cpu_ms_per_connection:.2f} + {dal_cpu:.2f} "
        f"(PynamoDB/botocore, measured with stubbed answers) = {cpu_ms:.2f} ms",
        "on Lambda: "
        + ", ".join(f"{mb} MB ~{rate:.0f} conn/s" for mb, rate in lambda_rate.items())
        + f"; budget {BUDGET:.0f} conn/s per invocation at {LAMBDA_MEMORY_MB} MB: {verdict}",
        f"one invocation ({usable_seconds} s usable of {LAMBDA_TIMEOUT_SECONDS} s): ~{per_invocation} connections; "
        f"per hour at rate({SCHEDULE_MINUTES} minutes): ~{per_hour_single} without fan-out, "
        f"~{per_hour_fanout} with the {MAX_INVOCATIONS_PER_RUN}-way fan-out",
    ]
    print("\n".join(lines), file=out)
    result: dict[str, Any] = {
        "n": args.n,
        "workers": args.workers,
        "bank_latency_ms": args.latency_ms,
        "dynamodb": args.dynamodb,
        "dynamodb_latency_ms": args.dynamodb_latency_ms if args.dynamodb == "model" else None,
        "refresher": _row(refresher),
        "baseline": _row(baseline),
        "speedup": round(refresher.rate / baseline.rate, 1),
        "dal_client_cpu_ms_per_connection": round(dal_cpu, 2),
        "cpu_ms_per_connection_with_real_repository": round(cpu_ms, 2),
        "lambda_estimate_connections_per_second": {str(mb): round(rate, 1) for mb, rate in lambda_rate.items()},
        "lambda_memory_mb": LAMBDA_MEMORY_MB,
        "budget_connections_per_second": BUDGET,
        "verdict": verdict,
        "connections_per_invocation": per_invocation,
        "connections_per_hour_single_invocation": per_hour_single,
        "connections_per_hour_with_fanout": per_hour_fanout,
        "real_repository_on_moto": None if fidelity is None else _row(fidelity),
        "machine": {"python": sys.version.split()[0], "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    path = ROOT / "bench" / "results" / "refresher.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}", file=out)


def _row(run: Timed) -> dict[str, Any]:
    return {
        "connections": run.connections,
        "seconds": round(run.seconds, 3),
        "connections_per_second": round(run.rate, 1),
        "cpu_ms_per_connection": round(run.cpu_ms_per_connection, 2),
    }


if __name__ == "__main__":
    sys.exit(main())
