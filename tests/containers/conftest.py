"""Fixtures of the container suite: `sam local` running the functions in real Lambda-like containers.

The containers run on the image `make lambda-image` builds offline (``scripts/lambda_image.py``), with the code and
the layer `sam build` wrote (.aws-sam/build), on the host network (``scripts/sam_cli.py``), against a local stack
on loopback (``start_stack(docker=True, docker_network="host")``: what `make run ARGS="--docker
--docker-network host"` starts). When Docker cannot run here, or the image is not built, every test is skipped and
says why (`make test` runs `make docker` and `make lambda-image` first). The stack's own in-process functions are
the oracle: an event must give the same answer in a container as in process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from local.stack import RunningStack, start_stack
from scripts import docker_engine
from scripts import lambda_image as image_recipe
from scripts.cfn_yaml import load_template
from tests.containers.sam import BUILD_DIR, REGION, SAM_PYTHON, Janitor, SamServer, free_port, sam_command
from tests.e2e.conftest import state_dir  # noqa: F401 - the session's sandbox PKI, shared with the e2e suite
from tests.e2e.test_journey import App
from tests.reliability.stack_helpers import BANK, MARC_IBANS, connect, consent_to_everything

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
USER = "user-marc"  # the sub of the events/ files' JWT claims
EVENT_RETURN_URLS = "https://app.example.com/"  # the prefix of the events' return_url (the template's default)


def stale_build() -> list[str]:
    """Where .aws-sam/build differs from the sources: layer modules, function files, pinned dependencies."""
    resources = load_template(ROOT / "template.yaml")["Resources"]
    pairs = [(ROOT / "layers" / "aisp" / "aisp", BUILD_DIR / "AispLayer" / "python" / "aisp")]
    pairs += [
        (ROOT / resource["Properties"]["CodeUri"], BUILD_DIR / name)
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
    ]
    problems = [
        str(built / path.relative_to(source))
        for source, built in pairs
        for path in sorted(source.rglob("*.py")) + sorted(source.rglob("*.json"))
        if "__pycache__" not in path.parts
        and not (
            (built / path.relative_to(source)).exists()
            and (built / path.relative_to(source)).read_bytes() == path.read_bytes()
        )
    ]
    layer = BUILD_DIR / "AispLayer" / "python"
    installed = {entry.name.lower() for entry in layer.glob("*.dist-info")}
    for line in (ROOT / "layers" / "aisp" / "requirements.txt").read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = (part.strip() for part in line.split("=="))
            if f"{name.replace('-', '_').lower()}-{version}.dist-info" not in installed:
                problems.append(f"AispLayer lacks {name}=={version}")
    return problems


@pytest.fixture(scope="session")
def lambda_image() -> str:
    """The offline-built image's tag; skips the suite, with the reason, when containers cannot run here."""
    if not SAM_PYTHON.exists():
        pytest.skip("SAM CLI's venv (.tools/sam) is missing: `make dev`")
    if reason := docker_engine.problem():
        pytest.skip(f"Docker cannot run here: {reason}")
    try:
        tag = image_recipe.collect_inputs(image_recipe.DEFAULT_PYTHON).tag
    except image_recipe.ImageUnavailableError as error:
        pytest.skip(f"no Lambda image can be made here: {error}")
    if not image_recipe.image_exists(tag):
        recorded = image_recipe.UNAVAILABLE_FILE
        why = recorded.read_text(encoding="utf-8").strip() if recorded.exists() else "run `make lambda-image`"
        pytest.skip(f"the Lambda image {tag} is not built: {why}")
    return tag


@pytest.fixture(scope="session")
def built(lambda_image) -> Path:
    """.aws-sam/build/template.yaml, checked to hold the current sources (`make build` writes it)."""
    template = BUILD_DIR / "template.yaml"
    assert template.exists(), "no .aws-sam/build: run `make build` (make test does) before the container suite"
    problems = stale_build()
    assert not problems, f".aws-sam/build is stale, run `make build`: {problems[:10]}"
    return template


@pytest.fixture(scope="session")
def janitor(lambda_image, tmp_path_factory) -> Iterator[Janitor]:
    """At the end of the session, the containers and images SAM CLI made are removed (and that is checked)."""
    keeper = Janitor.start()
    yield keeper
    left = keeper.clean()
    assert not left, f"left behind by the container suite: {left}"


@pytest.fixture(scope="package")
def logs(tmp_path_factory) -> Path:
    """Where SAM CLI's output goes (read it when a test fails)."""
    return tmp_path_factory.mktemp("sam-logs")


@pytest.fixture(scope="package")
def stack(state_dir, built) -> Iterator[RunningStack]:  # noqa: F811 - the imported fixture
    """The local stack on loopback, with sam-env.json for containers on the host network.

    The return URLs allowed are the stack's own and the events' (the template's default), so that
    events/connect/create_connection.json is accepted as it is.
    """
    api_port = free_port()
    with start_stack(
        api_port=api_port,
        moto_port=0,
        sandbox_port=0,
        sandbox_screens_port=0,
        state_dir=state_dir,
        docker=True,
        docker_network="host",
        parameter_overrides={"ReturnUrlAllowlist": f"http://127.0.0.1:{api_port}/,{EVENT_RETURN_URLS}"},
    ) as running:
        yield running


@pytest.fixture(scope="package")
def env_file(stack) -> Path:
    """The stack's --env-vars file: every declared variable, moto and the sandbox on 127.0.0.1."""
    assert stack.sam_env_path is not None
    values = json.loads(stack.sam_env_path.read_text(encoding="utf-8"))["Parameters"]
    assert values["AWS_ENDPOINT_URL"] == stack.moto_url  # loopback: the containers share this machine's network
    return stack.sam_env_path


def ensure_connected(stack: RunningStack) -> None:
    """User ``user-marc`` has an ACTIVE connection to 13807 with consent to everything (connects if not)."""
    app = App(stack.api_url, USER)
    connections = app.call("GET", "/v1/connections")["connections"]
    if not any(c["bank_code"] == BANK and c["status"] == "active" for c in connections):
        connect(stack, USER)
        consent_to_everything(app, BANK, MARC_IBANS)


@pytest.fixture
def marc(stack) -> RunningStack:
    """The stack, with Marc connected and consenting (the state the events/ files describe)."""
    ensure_connected(stack)
    return stack


@contextmanager
def sam_server(
    command: str, *, warm: str, image: str, template: Path, env_file: Path, log: Path
) -> Iterator[SamServer]:
    """`sam local <command> --config-env local` on a free loopback port, warm containers ``warm``; stopped after."""
    arguments = sam_command("local", command, image=image)
    arguments += ["--template", str(template), "--config-env", "local", "--env-vars", str(env_file)]
    server = SamServer([*arguments, "--warm-containers", warm], log=log)
    try:
        yield server
    finally:
        stopped = server.stop()
    assert stopped, f"sam local {command} ignored Ctrl-C (SIGINT) and was killed:\n{server.tail()}"


@pytest.fixture(scope="package")
def start_lambda(lambda_image, built, env_file, logs, janitor) -> Iterator[SamServer]:
    """`sam local start-lambda` with one warm container per function (``--warm-containers EAGER``)."""
    log = janitor.watch(logs / "start-lambda.log")
    with sam_server("start-lambda", warm="EAGER", image=lambda_image, template=built, env_file=env_file, log=log) as up:
        yield up


@pytest.fixture(scope="package")
def lambda_client(start_lambda) -> Any:
    """A Lambda client of `sam local start-lambda` (the Invoke API, each call run in the function's container)."""
    return boto3.client(
        "lambda",
        endpoint_url=start_lambda.url,
        region_name=REGION,
        config=Config(read_timeout=180, connect_timeout=10, retries={"max_attempts": 0}),
    )


def in_container(client: Any, function: str, event: dict[str, Any]) -> Any:
    """Invoke ``function`` in its container with ``event``; its result (a function error fails the test)."""
    answer = client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
    result = json.loads(answer["Payload"].read() or b"null")
    assert "FunctionError" not in answer, f"{function} failed in its container: {result}"
    return result


def in_process(stack: RunningStack, function: str, event: dict[str, Any]) -> Any:
    """The oracle: the stack's own copy of ``function`` (the handler the unit tests check), same state."""
    return stack.api.functions[function].invoke(event)


def function_for(stack: RunningStack, event_name: str) -> str:
    """The function whose code folder gives the event folder its name (events/accounts → functions/accounts)."""
    folder = event_name.split("/", 1)[0]
    (name,) = [name for name, spec in stack.app.functions.items() if spec.code_dir.name == folder]
    return name


def load(event_name: str) -> dict[str, Any]:
    """An events/ file."""
    event: dict[str, Any] = json.loads((EVENTS / event_name).read_text(encoding="utf-8"))
    return event
