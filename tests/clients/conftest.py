"""Clients generated from docs/openapi.json, as a fintech would generate them, into the test's temporary folder.

Python: ``openapi-python-client`` (its own venv, ``.tools/openapi-python-client``, installed by ``make dev``).
TypeScript: ``openapi-typescript`` and ``openapi-fetch`` (``node_modules``, ``npm ci`` by ``make dev``). Nothing
generated is committed. Without the tools (pytest run outside make), the tests are skipped and say why.
``state_dir`` (tests/e2e/conftest.py) is the sandbox PKI of the local stack the journeys run against.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.e2e.conftest import state_dir  # noqa: F401 - re-exported fixture: the sandbox PKI, once per session

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "openapi.json"
PYTHON_GENERATOR = ROOT / ".tools" / "openapi-python-client" / "bin" / "openapi-python-client"
NODE_BIN = ROOT / "node_modules" / ".bin"
PACKAGE = "bpce_aisp_client"


class GeneratedClient:
    """The generated Python package: ``client.api("banks.list_banks")``, ``client.model("Problem")``."""

    def __init__(self, package: ModuleType) -> None:
        self.package = package
        self.client: Any = importlib.import_module(f"{PACKAGE}.client")
        self.types: Any = importlib.import_module(f"{PACKAGE}.types")
        self.errors: Any = importlib.import_module(f"{PACKAGE}.errors")
        self._models: Any = importlib.import_module(f"{PACKAGE}.models")

    def api(self, name: str) -> Any:
        """An operation's module (``tag.operation_id`` in snake case), with ``sync_detailed`` and ``sync``."""
        return importlib.import_module(f"{PACKAGE}.api.{name}")

    def model(self, name: str) -> Any:
        return getattr(self._models, name)


@pytest.fixture(scope="session")
def python_client(tmp_path_factory: pytest.TempPathFactory) -> GeneratedClient:
    """``openapi-python-client generate`` over the committed document, imported from a temporary folder."""
    if not PYTHON_GENERATOR.exists():
        pytest.skip(f"{PYTHON_GENERATOR.relative_to(ROOT)} is missing: `make dev` installs it")
    folder = tmp_path_factory.mktemp("python-client")
    # Its post-generation hooks run ruff: the generator's own, from its venv.
    environment = {**os.environ, "PATH": f"{PYTHON_GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(  # noqa: S603 - our pinned tool, fixed arguments
        [
            str(PYTHON_GENERATOR),
            "generate",
            "--path",
            str(DOCUMENT),
            "--meta",
            "none",
            "--output-path",
            str(folder / PACKAGE),
            "--fail-on-warning",
        ],
        check=True,
        cwd=folder,
        env=environment,
        capture_output=True,
        timeout=120,
    )
    sys.path.insert(0, str(folder))
    try:
        return GeneratedClient(importlib.import_module(PACKAGE))
    finally:
        sys.path.remove(str(folder))


def node_tool(name: str) -> Path:
    """A pinned npm tool of ``node_modules/.bin``; skips the test when ``npm ci`` has not run."""
    tool = NODE_BIN / name
    if not tool.exists() or shutil.which("node") is None:
        pytest.skip(f"node_modules/.bin/{name} (or node) is missing: `make dev` installs it")
    return tool
