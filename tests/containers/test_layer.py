"""The containers import our dependencies from the layer `sam build` made, and from nowhere else.

The image holds the interpreter and the runtime client only (tests/containers/test_image.py), and the code comes
from .aws-sam/build, checked against the sources before the suite runs (conftest ``built``). So a dependency
missing from layers/aisp/requirements.txt is missing in the container, and the suite fails: shown here by building
the template again with one requirement dropped.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.containers.conftest import EVENTS, ROOT, stale_build
from tests.containers.sam import SAM_PYTHON, sam_environment, sam_invoke

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

DROPPED = "pynamodb"  # the DynamoDB models: every function reaches them


def test_the_build_the_containers_use_is_the_sources_with_every_pinned_dependency(built):
    # Then .aws-sam/build holds today's layer and functions, and a dist-info for every line of requirements.txt
    assert stale_build() == []


def test_a_requirement_missing_from_the_layer_fails_in_the_container(
    marc, lambda_image, env_file, logs, janitor, tmp_path
):
    # Given the project built again with pynamodb dropped from layers/aisp/requirements.txt
    project = tmp_path / "project"
    shutil.copytree(ROOT / "functions", project / "functions", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "layers", project / "layers", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "template.yaml", project / "template.yaml")
    requirements = project / "layers" / "aisp" / "requirements.txt"
    lines = requirements.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.lower().startswith(f"{DROPPED}==")]
    assert len(kept) == len(lines) - 1
    requirements.write_text("\n".join(kept) + "\n", encoding="utf-8")
    built = subprocess.run(  # noqa: S603 - fixed arguments
        [str(SAM_PYTHON), "-m", "scripts.sam_cli", "build", "--template", str(project / "template.yaml")]
        + ["--build-dir", str(project / "build")],
        cwd=ROOT,
        env=sam_environment(),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert not (project / "build" / "AispLayer" / "python" / DROPPED).exists()

    # When Marc's accounts are listed with that build
    invocation = sam_invoke(
        "AccountsFunction",
        EVENTS / "accounts" / "list_accounts.json",
        image=lambda_image,
        env_file=env_file,
        log_dir=logs,
        janitor=janitor,
        template=project / "build" / "template.yaml",
    )

    # Then the function fails, naming the module it could not import
    assert invocation.result.get("statusCode") != 200, invocation.result
    assert f"No module named '{DROPPED}'" in invocation.log + str(invocation.result)
