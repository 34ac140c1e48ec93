"""The Docker path (docs/sam-local.md) without Docker: the env file and the names containers use.

The containers themselves run in tests/containers (skipped where Docker cannot run). These checks need no engine,
so they hold everywhere: the stack's ``sam-env.json`` for containers on Docker's bridge (``host.docker.internal``)
and on the host network (loopback), what SAM CLI's own code makes of it for a function's container
(scripts/sam_local_env.py), and the sandbox certificate's coverage of ``host.docker.internal``, checked with a TLS
handshake (tests bind loopback only, so no container reaches the name here).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from local.sam_local import sam_env_vars, write_sam_env
from local.stack import start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".tools" / "sam" / "bin" / "python"

needs_sam = pytest.mark.skipif(not SAM_PYTHON.exists(), reason="SAM CLI's venv (.tools/sam) is missing: `make dev`")


@pytest.fixture(scope="module")
def stack(state_dir):
    with start_stack(api_port=0, moto_port=0, sandbox_port=0, sandbox_screens_port=0, state_dir=state_dir) as running:
        yield running


@pytest.fixture(scope="module")
def env_file(stack, tmp_path_factory) -> Path:
    """The stack's --env-vars file for containers on the host network: loopback instead of host.docker.internal."""
    return write_sam_env(stack, tmp_path_factory.mktemp("sam") / "sam-env.json", docker_host="127.0.0.1")


def container_environment(function: str, env_file: Path) -> dict[str, str]:
    """What SAM CLI would set in ``function``'s container (`sam local invoke --config-env local`)."""
    completed = subprocess.run(  # noqa: S603 - fixed arguments
        [str(SAM_PYTHON), "-m", "scripts.sam_local_env", function, "--env-vars", str(env_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], "SAM_CLI_TELEMETRY": "0", "HOME": str(Path.home())},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    environment: dict[str, str] = json.loads(completed.stdout)
    return environment


def test_the_env_file_points_containers_at_the_stack_by_the_docker_host_name(stack):
    values = sam_env_vars(stack)["Parameters"]
    ports = stack.ports

    # Containers reach moto and the bank API through host.docker.internal...
    assert values["AWS_ENDPOINT_URL"] == f"http://host.docker.internal:{ports['moto']}"
    assert values["BANK_BASE_URL_TEMPLATE"] == f"https://host.docker.internal:{ports['sandbox']}/{{bank_code}}"
    # ...trust the sandbox's CA given as text (they cannot see this machine's files)...
    assert values["BANK_CA_BUNDLE"] == stack.sandbox.ca_path.read_text(encoding="ascii")
    # ...while what a browser opens stays on this machine's loopback
    assert values["BANK_AUTHORIZE_URL_TEMPLATE"] == stack.environment["BANK_AUTHORIZE_URL_TEMPLATE"]
    assert values["OAUTH_CALLBACK_URL"] == f"{stack.api_url}/oauth/callback"
    # And every other variable is the stack's own (table names, key ids, secret name)
    for name in ("CONNECTIONS_TABLE_NAME", "TOKEN_KEY_ID", "CURSOR_KEY_ID", "BANK_CREDENTIALS_SECRET_NAME"):
        assert values[name] == stack.environment[name]


def test_the_sandbox_certificate_is_valid_for_host_docker_internal(stack):
    context = ssl.create_default_context(cafile=str(stack.sandbox.ca_path))
    context.load_cert_chain(*stack.sandbox.client_cert)
    port = stack.ports["sandbox"]

    # A TLS handshake that checks the name a container uses succeeds...
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="host.docker.internal") as tls,
    ):
        assert tls.version() is not None
    # ...and the same check fails for a name the certificate does not carry (the check can fail)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname="bank.example.com")


@needs_sam
def test_sam_cli_gives_the_container_the_local_stack(stack, env_file):
    environment = container_environment("AccountsFunction", env_file)

    # SAM CLI passed every override, including the two the template declares for sam local only
    assert environment["BANK_ENVIRONMENT"] == "local"
    assert environment["AWS_ENDPOINT_URL"] == stack.moto_url
    assert environment["BANK_CA_BUNDLE"].startswith("-----BEGIN CERTIFICATE-----")
    assert environment["CONNECTIONS_TABLE_NAME"] == "aisp-connections"
    assert environment["CURSOR_KEY_ID"] == stack.environment["CURSOR_KEY_ID"]
    # with its own runtime variables and samconfig.toml's region (the stack's moto region)
    assert environment["AWS_SAM_LOCAL"] == "true"
    assert environment["AWS_REGION"] == "eu-west-3"


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses a TCP socket listens on at ``port`` on this machine (/proc/net/tcp, state 0A)."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text(encoding="ascii").splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            addresses.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return addresses


def test_on_the_host_network_the_stack_listens_on_loopback_only_and_says_so_to_containers(state_dir, stack):
    # Given the module's stack stopped (one per process), a stack for containers that share this machine's network
    stack.stop()
    with start_stack(
        api_port=0,
        moto_port=0,
        sandbox_port=0,
        sandbox_screens_port=0,
        state_dir=state_dir,
        docker=True,
        docker_network="host",
    ) as host_stack:
        # When its sam-env.json and its sockets are read
        assert host_stack.sam_env_path is not None
        values = json.loads(host_stack.sam_env_path.read_text(encoding="utf-8"))["Parameters"]
        ports = host_stack.ports

        # Then containers are sent to the stack's own loopback URLs, and nothing listens beyond loopback
        assert values["AWS_ENDPOINT_URL"] == host_stack.moto_url
        assert values["BANK_BASE_URL_TEMPLATE"] == host_stack.environment["BANK_BASE_URL_TEMPLATE"]
        for name in ("moto", "sandbox", "sandbox_screens", "api"):
            assert listening_addresses(ports[name]) == {"127.0.0.1"}, name
