"""The offline sandbox in its own process, plus a sandbox-side helper that mints token pairs in bulk.

The sandbox keeps one token pair per TPP × PSU (a new code for the same PSU revokes the previous pair), and it has a
handful of personas, so thousands of independent connections cannot come from its login screens. ``mint_grants``
issues them directly in a bank's store, as its token endpoint would after a code exchange, without the "one pair per
PSU" revocation: each pair refreshes, expires and is revoked on its own. Used by ``bench/refresher.py`` (through
this module's command line, so the bank does not share the benchmark's GIL; ``bench.harness.SandboxHost`` drives it
for every benchmark) and by the refresher's tests (in process).

Usage: python -m bench.sandbox_host --certs DIR [--latency-ms 0] [--redirect-uri URI ...]
  prints ``{"api_origin", "screens_origin", "admin_url", "ca_path", "credentials"}`` on one line, then answers one
  JSON line per request line ``{"mint": N, "bank": "13807", "psu": "D0999990I0"}`` with
  ``{"tokens": [[access, refresh], ...]}``; stops at end of input.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from sandbox.core import SandboxCore
from sandbox.server import SandboxConfig, start_sandbox
from sandbox.store import DAY_SECONDS, Grant, Settings, new_token

MARC = "D0999990I0"


def mint_grants(core: SandboxCore, *, bank_code: str, psu_id: str = MARC, count: int) -> list[tuple[str, str]]:
    """Issue ``count`` independent (access, refresh) pairs for ``psu_id`` at ``bank_code`` (lifetimes: the bank's)."""
    store = core.stores[bank_code]
    now = core.clock.now()
    settings = core.settings
    pairs: list[tuple[str, str]] = []
    with store.lock:
        for _ in range(count):
            grant = Grant(
                client_id=core.tpp.client_id,
                psu_id=psu_id,
                refresh_token=new_token(),
                refresh_expires_at=now + settings.refresh_token_days * DAY_SECONDS,
                access_token=new_token(),
                access_expires_at=now + settings.access_token_seconds,
            )
            store.access_tokens[grant.access_token] = grant
            store.refresh_tokens[grant.refresh_token] = grant
            pairs.append((grant.access_token, grant.refresh_token))
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=Path, required=True)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--redirect-uri", action="append", default=[], help="registered redirect URI (repeatable)")
    parser.add_argument("--daily-quota", type=int, default=Settings().daily_quota, help="unattended calls a day")
    args = parser.parse_args()
    config = SandboxConfig(
        port=0,
        screens_port=0,
        certs_dir=args.certs,
        admin=True,
        latency_ms=args.latency_ms,
        settings=Settings(daily_quota=args.daily_quota),
    )
    if args.redirect_uri:
        config = replace(config, redirect_uris=tuple(args.redirect_uri))
    with start_sandbox(config) as bank:
        ready = {
            "api_origin": bank.api_origin,
            "screens_origin": bank.screens_origin,
            "admin_url": bank.admin_url,
            "ca_path": str(bank.ca_path),
            "credentials": bank.credentials,
        }
        print(json.dumps(ready), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            pairs = mint_grants(
                bank.core,
                bank_code=request.get("bank", "13807"),
                psu_id=request.get("psu", MARC),
                count=request["mint"],
            )
            print(json.dumps({"tokens": pairs}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
