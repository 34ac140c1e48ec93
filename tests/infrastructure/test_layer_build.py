"""AispLayer as `sam build` makes it (layers/aisp/Makefile): the pinned dependencies and aisp, with bytecode.

Lambda's /opt is read-only, so the layer must carry .pyc that CPython 3.13 uses without a source mtime to match
(unchecked-hash): shown by importing from the built layer with a module's source changed after the build.
"""

from __future__ import annotations

import importlib.util
import marshal
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.cfn_yaml import load_template
from tests.conftest import REPO_ROOT
from tests.containers.sam import sam_environment
from tests.infrastructure.conftest import SAM_PYTHON, needs_sam

pytestmark = [pytest.mark.infrastructure, needs_sam, pytest.mark.timeout(600)]

TAG = "cpython-313"
UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, source not checked


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer's python/ folder, built by SAM CLI alone (no cache) from the sources."""
    build_dir = tmp_path_factory.mktemp("layer-build")
    command = [str(SAM_PYTHON), "-m", "samcli", "build", "AispLayer", "--template", str(REPO_ROOT / "template.yaml")]
    command += ["--build-dir", str(build_dir), "--no-cached"]
    built = subprocess.run(  # noqa: S603 - our own venv's python, fixed arguments
        command, cwd=REPO_ROOT, env=sam_environment(), capture_output=True, text=True, timeout=500, check=False
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    return build_dir / "AispLayer" / "python"


def pyc(source: Path) -> Path:
    return source.parent / "__pycache__" / f"{source.stem}.{TAG}.pyc"


def test_every_module_of_the_layer_has_unchecked_hash_bytecode_for_cpython_313(layer):
    for source in (layer / "aisp" / "__init__.py", layer / "pydantic" / "__init__.py"):
        data = pyc(source).read_bytes()
        assert data[:4] == importlib.util.MAGIC_NUMBER, source  # this interpreter is the Makefile's 3.13
        assert int.from_bytes(data[4:8], "little") == UNCHECKED_HASH, source
        assert data[8:16] == importlib.util.source_hash(source.read_bytes()), source
        # The path recorded is Lambda's, not the build machine's (the same build anywhere gives the same bytes)
        code = marshal.loads(data[16:])  # noqa: S302 - the bytecode this build just wrote
        assert code.co_filename == "/opt" + str(source).removeprefix(str(layer.parent)), source
    assert [str(source.relative_to(layer)) for source in layer.rglob("*.py") if not pyc(source).is_file()] == []
    assert not list(layer.rglob("*.opt-*.pyc"))  # Lambda runs without -O


def test_the_layer_holds_exactly_the_pinned_requirements_and_the_aisp_package(layer):
    requirements = (REPO_ROOT / "layers" / "aisp" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    pins = {line.replace("-", "_").replace("==", "-").lower() for line in requirements if "==" in line}
    assert {entry.name.removesuffix(".dist-info").lower() for entry in layer.glob("*.dist-info")} == pins
    # Every platform wheel is for the layer's BuildArchitecture (layers/aisp/Makefile's WHEEL_ARCH follows it)
    architecture = load_template(REPO_ROOT / "template.yaml")["Resources"]["AispLayer"]["Metadata"]["BuildArchitecture"]
    wheel_arch = {"x86_64": "x86_64", "arm64": "aarch64"}[architecture]
    tags = [
        line.removeprefix("Tag: ")
        for wheel in layer.glob("*.dist-info/WHEEL")
        for line in wheel.read_text(encoding="utf-8").splitlines()
        if line.startswith("Tag: ") and not line.endswith("-any")
    ]
    assert tags  # pydantic-core, cryptography, cffi, ...
    assert [tag for tag in tags if "-manylinux" not in tag or not tag.endswith(f"_{wheel_arch}")] == []
    sources = REPO_ROOT / "layers" / "aisp" / "aisp"
    shipped = {p.relative_to(layer / "aisp") for p in (layer / "aisp").rglob("*") if "__pycache__" not in p.parts}
    expected = {p.relative_to(sources) for p in sources.rglob("*") if "__pycache__" not in p.parts}
    assert shipped == expected
    # The build's own files stay out: no Makefile, requirements.txt or console scripts pointing at this machine
    assert not {"Makefile", "requirements.txt", "bin"} & {p.name for p in layer.iterdir()}


def test_python_imports_the_layer_from_its_bytecode_without_checking_the_source(layer, tmp_path):
    # Given a copy of the built aisp package whose __init__.py now fails if it is ever compiled and run
    copy = tmp_path / "python"
    shutil.copytree(layer / "aisp", copy / "aisp")
    source = copy / "aisp" / "__init__.py"
    source.write_text('raise RuntimeError("compiled from source")\n', encoding="utf-8")

    # When CPython imports it, writing no bytecode (as on Lambda's read-only /opt)
    script = "import sys; sys.path.insert(0, sys.argv[1]); import aisp; print(aisp.__file__)"
    imported = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-B", "-I", "-c", script, str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then the build's bytecode ran, not the changed source, and no new .pyc was written
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == str(source)
    assert sorted(p.name for p in pyc(source).parent.iterdir()) == sorted(
        p.name for p in pyc(layer / "aisp" / "__init__.py").parent.iterdir()
    )
