"""``python -m sandbox``: run the offline 89C3 sandbox until interrupted (Ctrl-C or SIGTERM).

It prints the API and authorize URL templates, the CA and the TPP credential paths, then one JSON line starting
with ``sandbox-ready`` for scripts that start it as a subprocess.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from sandbox.banks import BANKS
from sandbox.certs import DEFAULT_CLIENT_ID
from sandbox.server import DEFAULT_CERTS_DIR, DEFAULT_REDIRECT_URI, RunningSandbox, SandboxConfig, start_sandbox
from sandbox.store import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="Offline 89C3 (BPCE STET) sandbox bank")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8443, help="HTTPS API port, mTLS (default 8443; 0 = any)")
    parser.add_argument("--screens-port", type=int, default=8080, help="HTTP login screens port (default 8080)")
    parser.add_argument("--certs", type=Path, default=DEFAULT_CERTS_DIR, help="certificate directory")
    parser.add_argument(
        "--redirect-uri",
        action="append",
        dest="redirect_uris",
        metavar="URI",
        help=f"registered redirect URI, repeatable (default {DEFAULT_REDIRECT_URI})",
    )
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID, help="registered TPP client_id (= keyId)")
    parser.add_argument("--latency-ms", type=int, default=0, help="latency added to every token/AISP call")
    parser.add_argument("--page-size", type=int, default=Settings().page_size, help="transactions per page")
    parser.add_argument(
        "--refresh-token-days", type=int, default=Settings().refresh_token_days, help="refresh token lifetime"
    )
    parser.add_argument("--admin", action="store_true", help="enable /_admin (same as SANDBOX_ADMIN=1)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def _banner(sandbox: RunningSandbox, config: SandboxConfig) -> str:
    certs = sandbox.certs
    banks = ", ".join(f"{bank.code} ({'/'.join(b.short_name for b in bank.brands)})" for bank in BANKS)
    lines = [
        "89C3 offline sandbox is running",
        f"  API (mTLS)        {sandbox.api_origin}/{{bank_code}}",
        f"  authorize         {sandbox.screens_origin}/{{bank_code}}/stet/psd2/oauth/authorize",
        f"  banks             {banks}",
        f"  CA certificate    {certs.ca_cert}",
        f"  TPP QWAC          {certs.qwac_cert}  key {certs.qwac_key}",
        f"  TPP QSealC        {certs.qseal_cert}  key {certs.qseal_key}",
        f"  credentials JSON  {certs.credentials}",
        f"  client_id / keyId {config.client_id}",
        f"  redirect URIs     {' '.join(config.redirect_uris)}",
        f"  admin             {'enabled at ' + sandbox.admin_url if sandbox.core.admin_enabled else 'disabled'}",
    ]
    ready = {
        "api_url": f"{sandbox.api_origin}/{{bank_code}}",
        "authorize_url": f"{sandbox.screens_origin}/{{bank_code}}",
        "ca_path": str(certs.ca_cert),
        "qwac_cert": str(certs.qwac_cert),
        "qwac_key": str(certs.qwac_key),
        "qseal_cert": str(certs.qseal_cert),
        "qseal_key": str(certs.qseal_key),
        "credentials_path": str(certs.credentials),
        "client_id": config.client_id,
    }
    lines.append("sandbox-ready " + json.dumps(ready))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Start the sandbox and block until SIGINT/SIGTERM."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(message)s"
    )
    config = SandboxConfig(
        host=args.host,
        port=args.port,
        screens_port=args.screens_port,
        certs_dir=args.certs,
        client_id=args.client_id,
        redirect_uris=tuple(args.redirect_uris or (DEFAULT_REDIRECT_URI,)),
        latency_ms=args.latency_ms,
        admin=True if args.admin else None,
        settings=Settings(page_size=args.page_size, refresh_token_days=args.refresh_token_days),
    )
    stopping = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with start_sandbox(config) as sandbox:
        sys.stdout.write(_banner(sandbox, config))
        sys.stdout.flush()
        while not stopping.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
