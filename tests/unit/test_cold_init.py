"""What a cold start does not do: importing an HTTP function's module builds no schema of ours, and the functions
with many routes leave the use cases to the routes' first calls (bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

HTTP_FUNCTIONS = ["connect", "oauth_callback", "consents", "accounts"]

# Run in a fresh interpreter, as at a Lambda cold start: every pydantic model of the layer that exists after the
# import, and those whose schema (validator, serializer) was built.
PROBE = """
import json, sys
import app
from pydantic import BaseModel

def subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)

ours = {m for m in subclasses(BaseModel) if m.__module__.startswith("aisp.")}
print(json.dumps({
    "modules": sorted(name for name in sys.modules if name.startswith("aisp.")),
    "models": len(ours),
    "built": sorted(f"{m.__module__}.{m.__qualname__}" for m in ours if m.__pydantic_complete__),
}))
"""


def import_app(function: str) -> dict[str, Any]:
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT / "functions" / function,
        env={"PYTHONPATH": f"{REPO_ROOT / 'layers' / 'aisp'}", "POWERTOOLS_SERVICE_NAME": "t"},
    )
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


@pytest.mark.parametrize("function", HTTP_FUNCTIONS)
def test_importing_an_http_function_builds_no_model_schema(function: str):
    # When the function's module is imported in a fresh interpreter
    answer = import_app(function)

    # Then the layer's models it defines are all waiting for their first use (defer_build)
    assert answer["models"], "the probe found no model of the layer: it no longer sees what the import defines"
    assert answer["built"] == []


@pytest.mark.parametrize(
    ("function", "use_case"),
    [("accounts", "aisp.logic.accounts"), ("accounts", "aisp.logic.sync.feed"), ("connect", "aisp.logic.connections")],
)
def test_a_use_case_is_imported_by_the_first_call_of_its_route(function: str, use_case: str):
    # When the function's module is imported in a fresh interpreter
    answer = import_app(function)

    # Then the routes' shared parts are there, the use case is not
    assert "aisp.api.errors" in answer["modules"]
    assert use_case not in answer["modules"]
