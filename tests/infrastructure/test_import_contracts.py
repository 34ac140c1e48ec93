"""The dependency rules of `make lint` (import-linter's contracts in pyproject.toml) hold on the tree, and each one
breaks when a copy of the tree gets the import it forbids: a rule that could not fail would protect nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": f"{tree / 'layers' / 'aisp'}{os.pathsep}{tree}"}
    return subprocess.run(  # noqa: S603 - our own venv's tool, fixed arguments
        [str(LINT_IMPORTS), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def tree(tmp_path) -> Path:
    """A copy of the package, the functions and the contracts."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "requirements.txt")
    shutil.copytree(ROOT / "layers" / "aisp" / "aisp", tmp_path / "layers" / "aisp" / "aisp", ignore=ignore)
    shutil.copytree(ROOT / "functions", tmp_path / "functions", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_contract(tree):
    run = _lint_imports(tree)

    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        ("layers/aisp/aisp/logic/accounts.py", "import aisp.dal.connections", "Use cases reach the bank"),
        ("layers/aisp/aisp/logic/consents.py", "import aisp.wiring", "Use cases reach the bank"),
        ("functions/accounts/app.py", "import aisp.stet.client", "Functions take their objects from aisp.wiring"),
        ("functions/connect/app.py", "import aisp.aws.kms", "Functions take their objects from aisp.wiring"),
        ("layers/aisp/aisp/stet/gateway.py", "import aisp.logic.accounts", "Adapters implement the ports"),
        ("layers/aisp/aisp/models/connection.py", "import aisp.logic.ports", "Models, errors, clock and settings"),
        ("layers/aisp/aisp/logic/banks.py", "import functions.accounts.app", "Layers: functions above aisp.wiring"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tree, module, planted, contract):
    path = tree / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{planted}  # planted by the test\n", encoding="utf-8")

    run = _lint_imports(tree)

    assert run.returncode == 1, run.stdout + run.stderr
    broken = [line for line in run.stdout.splitlines() if " BROKEN" in line]
    assert any(line.startswith(contract) for line in broken), run.stdout
