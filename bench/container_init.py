"""Cold init per function inside a Lambda container, beside the same function's cold init in process.

Each sample is one `sam local invoke` of the built template (.aws-sam/build) in a fresh container of the offline
image (scripts/lambda_image.py), on the host network, against a local stack on loopback. The figure is the
runtime's own: the emulator's ``INIT REPORT(durationMs: ...)`` (with ``SAM_CLI_RIE_DEV=1``), from starting
``/var/runtime/bootstrap`` to awslambdaric's first request for an event, i.e. interpreter start, runtime client
and handler module imported, as Lambda's Init Duration. (The REPORT line's own "Init Duration" is not that:
aws/aws-lambda-runtime-interface-emulator#106.) The in-process figure is ``bench.cold_start``'s (a fresh
interpreter importing the handler, the layer from source), measured in the same rounds. Functions are
interleaved so that a busy moment of the machine hits every row alike.

The build's layer carries unchecked-hash .pyc (layers/aisp/Makefile; Lambda's /opt is read-only, so without them
every cold start compiles every module it imports). Two more container columns run copies of the build: one with
every ``__pycache__`` removed (sources only, what `sam build` shipped before the layer was compiled), and one with
the functions' own code compiled too (the functions are built by SAM's python3.13 workflow, which writes none).

Usage: python -m bench.container_init [--runs 5]   (make bench; needs Docker: `make docker`, and `make build`)
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from py_compile import PycInvalidationMode

from bench.cold_start import sample
from scripts import docker_engine, lambda_image

ROOT = Path(__file__).resolve().parent.parent
SAM_PYTHON = ROOT / ".tools" / "sam" / "bin" / "python"
BUILT = ROOT / ".aws-sam" / "build" / "template.yaml"
# One event per function that needs no placeholder and no connection: init does not depend on it.
CASES = {
    "ConnectFunction": ("connect", "connect/list_banks.json"),
    "OAuthCallbackFunction": ("oauth_callback", "oauth_callback/invalid_state.json"),
    "ConsentsFunction": ("consents", "consents/submit_consent_no_jwt.json"),
    "AccountsFunction": ("accounts", "accounts/list_accounts_no_jwt.json"),
    "TokenRefresherFunction": ("token_refresher", "token_refresher/scheduled.json"),
}
INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: ([0-9.]+)\)")


def images() -> set[str]:
    """Every image id the engine has."""
    listing = subprocess.run(
        ["docker", "image", "ls", "--all", "--quiet", "--no-trunc"],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    )
    return set(listing.stdout.split())


def sources_only_copy(target: Path) -> Path:
    """A copy of .aws-sam/build without any bytecode; its template."""
    shutil.copytree(BUILT.parent, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target / BUILT.name


def functions_compiled_copy(target: Path) -> Path:
    """A copy of .aws-sam/build with the functions' code compiled to bytecode as the layer is; its template."""
    shutil.copytree(BUILT.parent, target)
    for function in CASES:
        folder = target / function
        if not compileall.compile_dir(folder, quiet=1, invalidation_mode=PycInvalidationMode.UNCHECKED_HASH):
            raise RuntimeError(f"compileall failed under {folder}")
    return target / BUILT.name


def container_init_ms(function: str, event: str, *, template: Path, image: str, env_file: Path) -> float:
    """One fresh container: the runtime's init duration (ms)."""
    command = [str(SAM_PYTHON), "-m", "scripts.sam_cli", "local", "invoke", function, "--event", f"events/{event}"]
    command += ["--template", str(template), "--config-env", "local", "--env-vars", str(env_file)]
    command += ["--invoke-image", image, "--skip-pull-image", "--docker-network", "host"]
    environment = {**os.environ, "SAM_CLI_TELEMETRY": "0", "SAM_CLI_RIE_DEV": "1"}
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300, check=False)
    found = INIT_REPORT.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"sam local invoke {function} gave no INIT REPORT:\n{done.stderr[-2000:]}")
    return float(found.group(1))


def run(runs: int, image: str, env_file: Path, templates: dict[str, Path]) -> dict[str, dict[str, list[float]]]:
    """``runs`` rounds over every function: a sample of each container variant (``templates``) and one in process."""
    columns = (*templates, "process")
    samples: dict[str, dict[str, list[float]]] = {name: {column: [] for column in columns} for name in CASES}
    for folder in {folder for folder, _ in CASES.values()}:  # warm the page cache and .pyc files once
        sample("import app", ROOT / "functions" / folder, write_bytecode=True)
    for round_number in range(1, runs + 1):
        for function, (folder, event) in CASES.items():
            for column, template in templates.items():
                init_ms = container_init_ms(function, event, template=template, image=image, env_file=env_file)
                samples[function][column].append(init_ms)
            wall, _ = sample("import app", ROOT / "functions" / folder)
            samples[function]["process"].append(wall * 1000)
        print(f"round {round_number}/{runs} done", file=sys.stderr, flush=True)
    return samples


def remove_new_images(before: set[str]) -> None:
    """Remove the images SAM CLI built for these runs (its samcli/lambda-... image and its build steps)."""
    for image in images() - before:
        subprocess.run(["docker", "image", "rm", image], capture_output=True, check=False)  # noqa: S607


def report(samples: dict[str, dict[str, list[float]]], runs: int, image: str) -> list[dict[str, object]]:
    """Print the table; the rows as data."""
    print(f"cold init in a Lambda container ({image}), median of {runs} fresh containers, beside in process (ms)")
    header = f"{'function':24} {'as built':>9} {'min':>7} {'max':>7} {'no .pyc':>8} {'+fn .pyc':>9} {'in process':>11}"
    print(f"{header} {'ratio':>6} {'no .pyc':>8}")
    rows: list[dict[str, object]] = []
    for function, values in samples.items():
        built, process = statistics.median(values["built"]), statistics.median(values["process"])
        sources, compiled = statistics.median(values["sources"]), statistics.median(values["functions"])
        low, high = min(values["built"]), max(values["built"])
        ratio, sources_ratio = built / process, sources / process
        print(
            f"{function:24} {built:9.1f} {low:7.1f} {high:7.1f} {sources:8.1f} {compiled:9.1f} {process:11.1f}"
            f" {ratio:6.2f} {sources_ratio:8.2f}"
        )
        rows.append(
            {
                "function": function,
                "container_median_ms": round(built, 1),
                "container_min_ms": round(low, 1),
                "container_max_ms": round(high, 1),
                "container_sources_only_median_ms": round(sources, 1),
                "container_functions_compiled_median_ms": round(compiled, 1),
                "in_process_median_ms": round(process, 1),
                "ratio": round(ratio, 2),
                "sources_only_ratio": round(sources_ratio, 2),
            }
        )
    print("as built: .aws-sam/build (the layer with .pyc); no .pyc: the same without any; +fn .pyc: the functions")
    print("compiled too; ratio = container / in process")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh containers per function (default 5)")
    args = parser.parse_args()
    if reason := docker_engine.problem():
        print(f"container init: skipped, Docker cannot run here: {reason}")
        return 0
    if not BUILT.exists():
        print("container init: run `make build` first", file=sys.stderr)
        return 1
    image = lambda_image.build(lambda_image.DEFAULT_PYTHON)  # nothing is built when it exists
    from local.stack import start_stack  # noqa: PLC0415 - the stack (and the layer) only once Docker can run

    before = images()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-container-") as state,
            start_stack(
                api_port=0,
                moto_port=0,
                sandbox_port=0,
                sandbox_screens_port=0,
                state_dir=Path(state),
                docker=True,
                docker_network="host",
            ) as stack,
        ):
            assert stack.sam_env_path is not None
            templates = {
                "built": BUILT,
                "sources": sources_only_copy(Path(state) / "sources-only"),
                "functions": functions_compiled_copy(Path(state) / "functions-compiled"),
            }
            samples = run(args.runs, image, stack.sam_env_path, templates)
    finally:
        remove_new_images(before)
    rows = report(samples, args.runs, image)
    out = ROOT / "bench" / "results" / "container_init.json"
    result = {"runs": args.runs, "image": image, "python": sys.version.split()[0], "rows": rows}
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
