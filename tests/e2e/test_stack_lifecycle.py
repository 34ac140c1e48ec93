"""The stack starts on free ports and stops cleanly: no thread left, ports free, the process as it was.

Kept apart from test_stack.py: one stack runs per process at a time, and that module's stack lives for the module.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from local.stack import StackError, start_stack
from tests.e2e.conftest import port_is_free

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

TIMEOUT = 10
REPO_ROOT = Path(__file__).resolve().parents[2]
FREE_PORTS = {"api_port": 0, "moto_port": 0, "sandbox_port": 0, "sandbox_screens_port": 0}


def _new_threads(before: set[threading.Thread], deadline: float = 5.0) -> list[str]:
    """Threads started since ``before`` that are still alive after up to ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        alive = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
        if not alive or time.monotonic() > end:
            return alive
        time.sleep(0.05)


def test_stack_stops_cleanly(state_dir):
    # Given the process as it is before a stack
    threads_before = set(threading.enumerate())
    environment_before = dict(os.environ)
    layer_before = sys.modules.get("aisp.settings")

    # When a stack starts, serves over keep-alive connections, runs the refresher, and stops
    stack = start_stack(refresher_interval=0.2, state_dir=state_dir, **FREE_PORTS)
    ports = stack.ports
    try:
        assert stack.schedule_timer("TokenRefresherFunction").is_running
        with pytest.raises(StackError, match="already running"):
            start_stack(state_dir=state_dir, **FREE_PORTS)
        with requests.Session() as session:
            token = session.get(f"{stack.api_url}/_local/token", params={"user": "marc"}, timeout=TIMEOUT).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            assert session.get(f"{stack.api_url}/v1/banks", headers=headers, timeout=TIMEOUT).status_code == 200
            idle = socket.create_connection(("127.0.0.1", ports["api"]))  # a client that never sends anything
            assert sys.modules.get("aisp.settings") is not layer_before  # the stack imported its own layer
            time.sleep(0.5)  # a couple of refresher ticks
            stack.stop()
            idle.close()
    finally:
        stack.stop()

    # Then no thread is left, every port is free, and the environment and modules are the process's own again
    assert _new_threads(threads_before) == []
    assert {name: port_is_free(port) for name, port in ports.items()} == dict.fromkeys(ports, True)
    assert dict(os.environ) == environment_before
    assert sys.modules.get("aisp.settings") is layer_before
    assert not [name for name in sys.modules if name.startswith("local_fn_")]


def test_failed_start_leaves_nothing_running(state_dir):
    # Given a sandbox port already taken (the failure comes after moto and the API are up)
    threads_before = set(threading.enumerate())
    environment_before = dict(os.environ)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        # When the stack tries to start
        with pytest.raises(OSError, match="in use"):
            start_stack(state_dir=state_dir, **{**FREE_PORTS, "sandbox_port": port})

    # Then what had started is stopped, and a new stack can start
    assert _new_threads(threads_before) == []
    assert dict(os.environ) == environment_before
    with start_stack(state_dir=state_dir, **FREE_PORTS) as stack:
        assert requests.get(f"{stack.api_url}/", timeout=TIMEOUT).status_code == 200


def test_cli_serves_and_stops_on_sigterm(state_dir, tmp_path):
    # Given `python -m local` on free ports (API_PORT/MOTO_PORT from the environment, the others from flags)
    log = (tmp_path / "stderr.log").open("w+", encoding="utf-8")  # a file: a full pipe would block the stack
    process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [
            sys.executable,
            "-m",
            "local",
            "--sandbox-port=0",
            "--sandbox-screens-port=0",
            f"--state-dir={state_dir}",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        # Two ports from the environment, two from flags
        env={**os.environ, "PYTHONUNBUFFERED": "1", "API_PORT": "0", "MOTO_PORT": "0"},
    )
    try:
        # When it is ready
        ready = None
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("local-ready "):
                ready = json.loads(line.removeprefix("local-ready "))
                break
        assert ready is not None, (tmp_path / "stderr.log").read_text(encoding="utf-8")
        token = requests.get(f"{ready['api']}/_local/token", params={"user": "marc"}, timeout=TIMEOUT).json()
        banks = requests.get(
            f"{ready['api']}/v1/banks", headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=TIMEOUT
        )
        assert banks.status_code == 200

        # Then SIGTERM stops it cleanly and frees its ports
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    ports = [int(url.rsplit(":", 1)[1].split("/", 1)[0]) for url in (ready["api"], ready["moto"])]
    assert all(port_is_free(port) for port in ports)
