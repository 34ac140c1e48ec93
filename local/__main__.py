"""``python -m local`` (``make run``): the whole gateway on this machine until Ctrl-C or SIGTERM.

Ports come from the flags, else from ``API_PORT``, ``MOTO_PORT``, ``SANDBOX_PORT`` and ``SANDBOX_SCREENS_PORT``,
else 3000, 5000, 8443 and 8080. After the banner, one line starting with ``local-ready`` carries the URLs as JSON
for scripts that start the stack as a subprocess.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import FrameType

from local.stack import DEFAULT_STATE_DIR, DEFAULT_TEMPLATE, RunningStack, StackError, start_stack
from local.template import TemplateError

PORT_VARIABLES = {
    "api_port": ("API_PORT", 3000),
    "moto_port": ("MOTO_PORT", 5000),
    "sandbox_port": ("SANDBOX_PORT", 8443),
    "sandbox_screens_port": ("SANDBOX_SCREENS_PORT", 8080),
}


def _port(variable: str, default: int) -> int:
    raw = os.environ.get(variable)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{variable}={raw!r} is not a port number") from None
    if not 0 <= value <= 65535:  # noqa: PLR2004
        raise SystemExit(f"{variable}={raw!r} is not a port number")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local",
        description="The AISP gateway on this machine: moto + the offline 89C3 sandbox + the template's HTTP API.",
    )
    for option, (variable, default) in PORT_VARIABLES.items():
        flag = "--" + option.replace("_", "-")
        parser.add_argument(
            flag, type=int, default=None, help=f"listening port (env {variable}, default {default}; 0 = any free)"
        )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--refresher-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds between refresher runs (default: the template's schedule rate; 0 = no timer)",
    )
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE, help="SAM template to serve")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="certificates and keys")
    parser.add_argument(
        "--sandbox-admin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the sandbox's /_admin API, loopback callers only (default on: POST /_local/sandbox/clock uses it)",
    )
    parser.add_argument(
        "--docker",
        action="store_true",
        help=(
            "for sam local containers: <state-dir>/sam-env.json is written for --env-vars; on Docker's bridge, "
            "moto and the sandbox also listen on every interface (reached as host.docker.internal)"
        ),
    )
    parser.add_argument(
        "--docker-network",
        choices=["bridge", "host"],
        default="bridge",
        help=(
            "with --docker: host = the containers share this machine's network (python -m scripts.sam_cli ... "
            "--docker-network host), so nothing listens beyond --host and sam-env.json points there"
        ),
    )
    parser.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin the API allows (CORS), repeatable; http://localhost:<api port> always is",
    )
    parser.add_argument("--log-level", default="INFO", help="log level of the local stack (default INFO)")
    return parser


def banner(stack: RunningStack, *, docker: bool = False, docker_network: str = "bridge") -> str:
    """What ``make run`` prints once everything listens."""
    urls = stack.urls
    schedules = ", ".join(
        f"{name} every {timer.interval:g}s" for name, timer in stack.timers.items() if timer.is_running
    )
    lines = [
        "AISP gateway running locally (Ctrl-C to stop)",
        f"  quickstart page   {urls.quickstart}  (or {urls.quickstart.replace('127.0.0.1', 'localhost')}: "
        "the same page calling the API cross-origin, through CORS)",
        f"  HTTP API          {urls.api}  ({len(stack.app.routes)} routes from {stack.template.path.name})",
        f"  local token       {urls.api}/_local/token?user=marc",
        f"  sandbox API       {urls.sandbox_api}  (mTLS)",
        f"  sandbox screens   {urls.sandbox_screens}",
        f"  moto              {urls.moto}  (AWS_ENDPOINT_URL)",
        f"  schedules         {schedules or 'none running'}",
    ]
    if docker:
        env_file = stack.sam_env_path
        lines.append(f"  sam local env     {env_file}  (sam local invoke|start-api --config-env local)")
        if docker_network == "bridge":
            lines.append(
                "  note              moto and the sandbox listen on every interface: use this on a trusted network"
            )
        else:
            lines.append("  note              containers on the host network: run sam as python -m scripts.sam_cli")
    lines.append("local-ready " + json.dumps(asdict(urls)))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Start the stack and block until SIGINT/SIGTERM."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # moto's werkzeug logs every AWS call at INFO; the adapter's access log says what matters.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # Powertools warns on every read-only invocation that published no business metric (as in Lambda's logs).
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    ports: dict[str, int] = {
        option: (value if (value := getattr(args, option)) is not None else _port(variable, default))
        for option, (variable, default) in PORT_VARIABLES.items()
    }
    stopping = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # The default refresher interval is the template's schedule rate; 0 turns the timer off.
    interval = args.refresher_interval
    try:
        stack = start_stack(
            host=args.host,
            refresher_interval="template" if interval is None else interval,
            template=args.template,
            state_dir=args.state_dir,
            sandbox_admin=args.sandbox_admin,
            docker=args.docker,
            docker_network=args.docker_network,
            api_port=ports["api_port"],
            moto_port=ports["moto_port"],
            sandbox_port=ports["sandbox_port"],
            sandbox_screens_port=ports["sandbox_screens_port"],
            allowed_origins=args.allowed_origin,
        )
    except (TemplateError, StackError) as exc:
        sys.stderr.write(f"cannot start the local stack: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"cannot start the local stack: {exc} (is a port in use? see --help for the flags)\n")
        return 1
    with stack:
        sys.stdout.write(banner(stack, docker=args.docker, docker_network=args.docker_network))
        sys.stdout.flush()
        while not stopping.wait(1.0):
            pass
        sys.stdout.write("stopping...\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
