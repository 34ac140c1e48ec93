"""STET JSON schemas for validating the sandbox's bodies, vendored as small extracts.

``schemas/stet-1.4.0.47-aisp.json`` and ``schemas/stet-1.5.0-aisp.json`` hold the transitive closure of the AISP
definitions the sandbox serves, taken from the STET specification files in ``../shared/reference/stet/``
(STET, CC BY 3.0 FR) with descriptions and examples stripped. A test regenerates the closure from those files when
they are present and fails on drift; ``python -m tests.sandbox.stet_schemas`` rewrites the extracts.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

SCHEMA_DIR = Path(__file__).parent / "schemas"
REFERENCE_DIR = Path(
    os.environ.get("STET_REFERENCE_DIR", Path(__file__).resolve().parents[3] / "shared/reference/stet")
)
V1_SOURCE = "stet-psd2-api-1.4.0.47.swagger.yaml"
V15_SOURCE = "stet-ais-pis-1.5.0.json"
V1_EXTRACT = SCHEMA_DIR / "stet-1.4.0.47-aisp.json"
V15_EXTRACT = SCHEMA_DIR / "stet-1.5.0-aisp.json"
ROOTS = ("HalAccounts", "HalBalances", "HalTransactions", "HalBeneficiaries", "ErrorModel", "Access")
V15_ROOTS = (*ROOTS, "HalEndUserIdentity")
_DROPPED = {"description", "example", "examples", "title"}


def _strip(node: Any) -> Any:
    """Drop prose keywords (never property names: the keys of ``properties`` are kept as they are)."""
    if isinstance(node, dict):
        return {
            key: ({name: _strip(sub) for name, sub in value.items()} if key == "properties" else _strip(value))
            for key, value in node.items()
            if key not in _DROPPED and not key.lower().startswith("x-")
        }
    if isinstance(node, list):
        return [_strip(item) for item in node]
    return node


def _refs(node: Any, prefix: str) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(prefix):
            found.add(ref[len(prefix) :])
        for value in node.values():
            found |= _refs(value, prefix)
    elif isinstance(node, list):
        for item in node:
            found |= _refs(item, prefix)
    return found


def closure(definitions: dict[str, Any], roots: tuple[str, ...], prefix: str) -> dict[str, Any]:
    """The named definitions and everything they reference, stripped of prose."""
    todo, seen = list(roots), {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = _strip(definitions[name])
        todo.extend(_refs(seen[name], prefix) - set(seen))
    return dict(sorted(seen.items()))


def extract_from_reference() -> tuple[dict[str, Any], dict[str, Any]]:
    """Build both extracts from the original specification files."""
    v1_raw = (REFERENCE_DIR / V1_SOURCE).read_bytes()
    v15_raw = (REFERENCE_DIR / V15_SOURCE).read_bytes()
    v1 = {
        "_source": {"file": V1_SOURCE, "sha256": hashlib.sha256(v1_raw).hexdigest(), "license": "CC BY 3.0 FR, STET"},
        "definitions": closure(yaml.safe_load(v1_raw)["definitions"], ROOTS, "#/definitions/"),
    }
    v15 = {
        "_source": {"file": V15_SOURCE, "sha256": hashlib.sha256(v15_raw).hexdigest(), "license": "CC BY 3.0 FR, STET"},
        "components": {
            "schemas": closure(json.loads(v15_raw)["components"]["schemas"], V15_ROOTS, "#/components/schemas/")
        },
    }
    return v1, v15


def load_v1() -> dict[str, Any]:
    """The 1.4.0.47 extract: ``{"definitions": {...}}``."""
    data: dict[str, Any] = json.loads(V1_EXTRACT.read_text())
    return data


def load_v15() -> dict[str, Any]:
    """The 1.5.0.43 extract: ``{"components": {"schemas": {...}}}``."""
    data: dict[str, Any] = json.loads(V15_EXTRACT.read_text())
    return data


if __name__ == "__main__":
    SCHEMA_DIR.mkdir(exist_ok=True)
    v1_extract, v15_extract = extract_from_reference()
    V1_EXTRACT.write_text(json.dumps(v1_extract, indent=1, sort_keys=True) + "\n")
    V15_EXTRACT.write_text(json.dumps(v15_extract, indent=1, sort_keys=True) + "\n")
