"""Cold init per function: a fresh interpreter importing the handler module, beside a bare ``import boto3``.

Each sample is one new ``python`` process (interpreter start + imports + module-level init), timed from outside,
with the function's folder as the working directory and the layer on ``PYTHONPATH``, as in Lambda. Samples of all
functions are interleaved so a busy moment of the machine hits every row alike. Budget (DEVELOPERS.md): each
function's median under 1.5x the median of ``import boto3`` measured in the same run. The CPU columns (user + system
time of each process) move less than wall time when other work shares the machine.

Usage: python -m bench.cold_start [--runs 9]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ["connect", "oauth_callback", "consents", "accounts", "token_refresher", "account_sync"]
BUDGET_RATIO = 1.5
LAMBDA_LIKE_ENV = {
    "POWERTOOLS_SERVICE_NAME": "aisp-gateway",
    "POWERTOOLS_METRICS_NAMESPACE": "AispGateway",
    "AWS_DEFAULT_REGION": "eu-west-3",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def sample(code: str, cwd: Path, *, write_bytecode: bool = False) -> tuple[float, float]:
    """Wall time of one fresh interpreter, and the CPU (user + system) it used."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT / "layers" / "aisp"), **LAMBDA_LIKE_ENV}
    if write_bytecode:
        del env["PYTHONDONTWRITEBYTECODE"]
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=env)  # noqa: S603
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, process.args)
    return wall, usage.ru_utime + usage.ru_stime


def run(runs: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    cases = {"import boto3 (baseline)": ("import boto3", ROOT)}
    cases |= {name: ("import app", ROOT / "functions" / name) for name in FUNCTIONS}
    for code, cwd in cases.values():  # warm the OS page cache, and write the .pyc files a fresh clone lacks
        sample(code, cwd, write_bytecode=True)
    walls: dict[str, list[float]] = {name: [] for name in cases}
    cpus: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, (code, cwd) in cases.items():
            wall, cpu = sample(code, cwd)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return walls, cpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    walls, cpus = run(args.runs)
    baseline = statistics.median(walls["import boto3 (baseline)"])
    cpu_baseline = statistics.median(cpus["import boto3 (baseline)"])
    rows = []
    print(f"cold init, median of {args.runs} fresh interpreters (ms); budget {BUDGET_RATIO}x import boto3")  # noqa: T201
    print(  # noqa: T201
        f"{'case':28} {'median':>8} {'min':>8} {'max':>8} {'x boto3':>8} {'cpu':>8} {'x boto3':>8}  verdict"
    )
    for name, values in walls.items():
        median, cpu = statistics.median(values), statistics.median(cpus[name])
        ratio, cpu_ratio = median / baseline, cpu / cpu_baseline
        verdict = "" if name.startswith("import boto3") else ("ok" if ratio < BUDGET_RATIO else "OVER BUDGET")
        rows.append(
            {
                "case": name,
                "median_ms": round(median * 1000, 1),
                "ratio": round(ratio, 2),
                "cpu_ms": round(cpu * 1000, 1),
                "cpu_ratio": round(cpu_ratio, 2),
                "verdict": verdict,
            }
        )
        low, high = min(values) * 1000, max(values) * 1000
        print(  # noqa: T201
            f"{name:28} {median * 1000:8.1f} {low:8.1f} {high:8.1f} {ratio:8.2f} {cpu * 1000:8.1f} {cpu_ratio:8.2f}"
            f"  {verdict}"
        )
    out = ROOT / "bench" / "results" / "cold_start.json"
    out.write_text(json.dumps({"runs": args.runs, "python": sys.version.split()[0], "rows": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
