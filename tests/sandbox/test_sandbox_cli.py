"""``python -m sandbox`` as a process, and concurrent keep-alive clients against one sandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from sandbox.server import SandboxConfig, listen_address
from sandbox.web import HttpServer, Request, Response
from tests.sandbox.helpers import CLIENT_ID, MARC, SandboxClient

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_python_m_sandbox_prints_its_urls_and_stops_on_sigterm(certs_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "layers" / "aisp"), str(REPO)])}
    process = subprocess.Popen(  # noqa: S603 - fixed arguments
        [
            sys.executable,
            "-m",
            "sandbox",
            "--port",
            "0",
            "--screens-port",
            "0",
            "--certs",
            str(certs_dir),
            "--redirect-uri",
            "https://tpp.example/cb",
            "--latency-ms",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("sandbox-ready "):
                break
        ready = json.loads(lines[-1].removeprefix("sandbox-ready "))
        banner = "".join(lines)

        api = ready["api_url"].replace("{bank_code}", "13807")
        session = requests.Session()
        session.trust_env = False
        no_cert = session.post(
            f"{api}/stet/psd2/oauth/token", data={"client_id": CLIENT_ID}, verify=ready["ca_path"], timeout=5
        )
        with_cert = session.post(
            f"{api}/stet/psd2/oauth/token",
            data={"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": "x"},
            cert=(ready["qwac_cert"], ready["qwac_key"]),
            verify=ready["ca_path"],
            timeout=5,
        )
        screens = session.get(
            ready["authorize_url"].replace("{bank_code}", "13807") + "/stet/psd2/oauth/authorize",
            params={
                "client_id": CLIENT_ID,
                "redirect_uri": "https://tpp.example/cb",
                "response_type": "code",
                "scope": "aisp",
            },
            timeout=5,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)

    assert code == 0
    assert ready["api_url"].startswith("https://127.0.0.1:")
    assert ready["authorize_url"].startswith("http://127.0.0.1:")
    assert ready["credentials_path"] == str(certs_dir / "bank-credentials.json")
    assert "CA certificate" in banner
    assert str(certs_dir / "ca.pem") in banner
    assert "admin             disabled" in banner
    assert no_cert.status_code == 401
    assert with_cert.json()["error"] == "invalid_grant"
    assert screens.status_code == 200


def test_concurrent_keep_alive_clients_refresh_and_read(client: SandboxClient) -> None:
    tokens = client.connect(MARC)
    errors: list[str] = []
    access_tokens: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        with SandboxClient(client.sandbox) as tpp:
            for _ in range(15):
                refreshed = tpp.refresh(tokens["refresh_token"])
                read = tpp.get("/accounts", refreshed.json().get("access_token"), psu_ip="192.168.0.1")
                with lock:
                    access_tokens.append(refreshed.json()["access_token"])
                    if refreshed.status_code != 200 or read.status_code not in (200, 401):
                        errors.append(f"{refreshed.status_code}/{read.status_code}")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len(set(access_tokens)) == 8 * 15
    current = client.refresh(tokens["refresh_token"]).json()["access_token"]
    assert client.get("/accounts", current).status_code == 200
    assert sum(client.get("/accounts", t).status_code == 200 for t in access_tokens[-8:]) == 0


@pytest.mark.parametrize(
    ("host", "bind_all", "expected"),
    [("127.0.0.1", False, "127.0.0.1"), ("127.0.0.1", True, "0.0.0.0"), ("::1", True, "::"), ("::1", False, "::1")],  # noqa: S104
)
def test_the_sandbox_listens_on_every_interface_only_when_asked(host: str, bind_all: bool, expected: str) -> None:
    assert listen_address(SandboxConfig(host=host, bind_all=bind_all)) == expected


class _NoApp:
    def handle(self, request: Request) -> Response:
        raise AssertionError(f"no request expected: {request.url}")


def test_a_server_bound_elsewhere_hands_out_urls_with_its_origin_host() -> None:
    # Bound on loopback but named "localhost" in its URLs (as 0.0.0.0 is named 127.0.0.1 for sam local)
    server = HttpServer(("127.0.0.1", 0), _NoApp(), origin_host="localhost")
    try:
        assert server.origin == f"http://localhost:{server.port}"
    finally:
        server.server_close()
