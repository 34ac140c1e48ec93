"""The template tools the infrastructure tests drive: the SAM translator (.tools/sam) and checkov (.tools/checkov).

Both live in venvs of their own (`make dev` creates them); a test that needs one is skipped, saying so, without it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

SAM_PYTHON = REPO_ROOT / ".tools" / "sam" / "bin" / "python"
CHECKOV = REPO_ROOT / ".tools" / "checkov" / "bin" / "checkov"

needs_sam = pytest.mark.skipif(not SAM_PYTHON.exists(), reason="SAM CLI venv missing: run `make dev` (make test does)")
needs_checkov = pytest.mark.skipif(not CHECKOV.exists(), reason="checkov venv missing: run `make dev` (make test does)")


def translate(source: Path, output: Path) -> subprocess.CompletedProcess[str]:
    """Run `make validate`'s translate step (SAM transform, offline) on ``source``, writing ``output``."""
    command = [str(SAM_PYTHON), "-m", "scripts.translate_template", str(source), str(output)]
    return subprocess.run(  # noqa: S603 - our own venv's python, fixed arguments
        command, capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT
    )


@pytest.fixture(scope="session")
def translated_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """template.yaml as CloudFormation deploys it: Globals merged into each function, roles written out."""
    if not SAM_PYTHON.exists():
        pytest.skip("SAM CLI venv missing: run `make dev` (make test does)")
    output = tmp_path_factory.mktemp("translated") / "translated.json"
    result = translate(REPO_ROOT / "template.yaml", output)
    assert result.returncode == 0, result.stdout + result.stderr
    translated: dict[str, Any] = json.loads(output.read_text(encoding="utf-8"))
    return translated
