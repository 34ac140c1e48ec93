"""The offline-built Lambda image (`make lambda-image`, scripts/lambda_image.py): what it holds, and its rebuild rule.

Each check runs a throwaway container (``docker run --rm --network none``) of the image itself, without SAM CLI's
emulator or our layer.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from scripts import lambda_image as image_recipe
from tests.containers.sam import docker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def run_in_image(image: str, *command: str) -> subprocess.CompletedProcess[str]:
    """``command`` in a fresh container of ``image``, no network, removed afterwards."""
    return subprocess.run(  # noqa: S603 - fixed arguments
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", command[0], image, *command[1:]],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_image_runs_this_projects_python_and_the_pinned_runtime_client(lambda_image):
    # When the image's python reports its version and the runtime client's
    probe = (
        "import sys, importlib.metadata as m; sys.path.append('/var/runtime'); "
        "print(sys.version.split()[0], m.version('awslambdaric'))"
    )
    done = run_in_image(lambda_image, "/var/lang/bin/python3.13", "-c", probe)

    # Then the project's interpreter (the one `make` uses) and the pin of scripts/lambda-image/requirements.txt
    assert done.returncode == 0, done.stderr
    pinned = (image_recipe.RECIPE_DIR / "requirements.txt").read_text(encoding="utf-8")
    version, ric = done.stdout.split()
    assert version == platform.python_version() and sys.version_info[:2] == (3, 13)
    assert f"awslambdaric=={ric} " in pinned


def test_the_image_holds_no_third_party_package_of_its_own(lambda_image):
    # When the image's python imports what our layer ships, the layer absent
    done = run_in_image(lambda_image, "/var/lang/bin/python3.13", "-c", "import pydantic")

    # Then it cannot: every dependency must come from the layer (AWS's image has boto3; this one has nothing)
    assert done.returncode != 0
    assert "No module named 'pydantic'" in done.stderr


def test_the_image_starts_the_runtime_client_as_lambda_does(lambda_image):
    # When its bootstrap and environment are read
    bootstrap = run_in_image(lambda_image, "/bin/cat", "/var/runtime/bootstrap")
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", lambda_image))

    # Then the recipe's bootstrap, and Lambda's variables
    assert bootstrap.stdout == (image_recipe.RECIPE_DIR / "bootstrap").read_text(encoding="utf-8")
    assert 'python3.13 -m awslambdaric "$_HANDLER"' in bootstrap.stdout
    environment = dict(item.split("=", 1) for item in config["Env"])
    assert environment["LAMBDA_TASK_ROOT"] == config["WorkingDir"] == "/var/task"
    assert environment["LAMBDA_RUNTIME_DIR"] == "/var/runtime"


def test_the_image_records_its_inputs_and_is_not_rebuilt_for_the_same_ones(lambda_image):
    # Given the inputs' digest, which names the image
    inputs = image_recipe.collect_inputs(image_recipe.DEFAULT_PYTHON)
    manifest = json.loads(run_in_image(lambda_image, "/bin/cat", "/etc/aisp-lambda-image.json").stdout)
    image_id = docker("image", "inspect", "--format", "{{.Id}}", lambda_image).strip()

    # When `make lambda-image` runs again
    again = subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, "-m", "scripts.lambda_image", "--python", str(image_recipe.DEFAULT_PYTHON)],
        cwd=image_recipe.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then nothing is built: same tag, same image; and the image says what it was made from
    assert again.returncode == 0, again.stderr
    assert f"{inputs.tag} is up to date" in again.stdout
    assert docker("image", "inspect", "--format", "{{.Id}}", lambda_image).strip() == image_id
    assert manifest["digest"] == inputs.digest and lambda_image == inputs.tag
    assert set(inputs.packages) <= {line.split()[0] for line in manifest["debian_versions"]}
