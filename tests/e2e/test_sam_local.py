"""The Docker path (README, "With Docker"): `sam local` containers against the running local stack, minus Docker.

No container engine runs here, so the test takes the two halves of `sam local invoke --config-env local` apart:
SAM CLI's own code computes the container's environment from template.yaml, samconfig.toml's ``local`` section and
the stack's ``sam-env.json`` (scripts/sam_local_env.py), and a fresh interpreter runs the handler with exactly
that environment and the events/ files (tests/e2e/container/lambda_runtime.py). The one thing left out is the
name: containers reach this machine as ``host.docker.internal``, the test as ``127.0.0.1`` (tests may bind loopback
only); the sandbox certificate's coverage of that name is checked with a TLS handshake instead.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from local.sam_local import sam_env_vars, write_sam_env
from local.stack import start_stack
from tests.e2e.test_journey import make_refresh_due
from tests.reliability.stack_helpers import connect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".tools" / "sam" / "bin" / "python"
RUNTIME = Path(__file__).resolve().parent / "container" / "lambda_runtime.py"
EVENTS = ROOT / "events"
LAYER = ROOT / "layers" / "aisp"
USER = "user-marc"  # the sub of the events/ files' JWT claims
MARC_ACCOUNTS = {"038-CPT30019654051", "038-CPT30019654052", "038-CPT30019654053"}

needs_sam = pytest.mark.skipif(not SAM_PYTHON.exists(), reason="SAM CLI's venv (.tools/sam) is missing: `make dev`")


@pytest.fixture(scope="module")
def stack(state_dir):
    with start_stack(api_port=0, moto_port=0, sandbox_port=0, sandbox_screens_port=0, state_dir=state_dir) as running:
        yield running


@pytest.fixture(scope="module")
def env_file(stack, tmp_path_factory) -> Path:
    """The stack's --env-vars file, with loopback standing in for host.docker.internal."""
    return write_sam_env(stack, tmp_path_factory.mktemp("sam") / "sam-env.json", docker_host="127.0.0.1")


@pytest.fixture(scope="module")
def marc_connected(stack) -> None:
    """User ``user-marc`` connects Marc at 13807 through the stack's HTTP API and the sandbox's screens."""
    connect(stack, USER)


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


def invoke_in_container(code_dir: str, event: str, environment: dict[str, str]) -> dict[str, Any]:
    """Run ``app.lambda_handler`` in a fresh interpreter whose whole environment is ``environment``."""
    completed = subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, str(RUNTIME), str(ROOT / code_dir), str(LAYER), str(EVENTS / event)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environment, "PATH": os.environ["PATH"]},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    (line,) = [row for row in completed.stdout.splitlines() if row.startswith("lambda-result ")]
    result: dict[str, Any] = json.loads(line.removeprefix("lambda-result "))
    return result


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


@needs_sam
def test_an_invoked_accounts_function_reads_marcs_accounts_from_the_stack(stack, env_file, marc_connected):
    environment = container_environment("AccountsFunction", env_file)

    # sam local invoke AccountsFunction -e events/accounts/list_accounts.json --config-env local
    result = invoke_in_container("functions/accounts", "accounts/list_accounts.json", environment)

    assert result["statusCode"] == 200, result["body"]
    accounts = json.loads(result["body"])
    assert {account["account_id"] for account in accounts["accounts"]} == MARC_ACCOUNTS


@needs_sam
def test_invoked_connect_and_refresher_functions_work_against_the_stack(stack, env_file, marc_connected):
    # sam local invoke ConnectFunction -e events/connect/list_connections.json --config-env local
    listed = invoke_in_container(
        "functions/connect", "connect/list_connections.json", container_environment("ConnectFunction", env_file)
    )
    assert listed["statusCode"] == 200, listed["body"]
    assert [c["bank_code"] for c in json.loads(listed["body"])["connections"]] == ["13807"]

    # sam local invoke TokenRefresherFunction -e events/token_refresher/scheduled.json --config-env local,
    # with Marc's access token about to expire
    make_refresh_due(stack, USER, "13807")
    refreshed = invoke_in_container(
        "functions/token_refresher",
        "token_refresher/scheduled.json",
        container_environment("TokenRefresherFunction", env_file),
    )
    (run,) = refreshed["runs"]
    assert (run["attempted"], run["refreshed"], run["failed"]) == (1, 1, 0), run
