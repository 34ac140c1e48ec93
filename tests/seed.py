"""The 89C3 sandbox guide's sample payloads, as the guide prints them (``tests/fixtures/seed/89c3-seed-payloads.txt``).

:func:`seed_text` gives a payload verbatim; :func:`seed_json` parses it after the repairs a printed page needs and a
bank's wire would not (each one named in :data:`Repair`, and reported, so a test pins which payload needed what):

* ``nbsp``: the guide indents with non-breaking spaces, which JSON does not count as white space;
* ``trailing-comma``: ``"templated": false,`` before a closing brace;
* ``opening-brace`` / ``closing-brace``: an object printed without its first or last line.

Nothing else is touched: values (the space inside the consent's IBAN, links without ``href``) stay as printed.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

SEED_FILE = Path(__file__).parent / "fixtures" / "seed" / "89c3-seed-payloads.txt"
GUIDE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "89c3-sandbox-assembly.txt"
_SECTION = re.compile(r"^=== (?P<name>[a-z0-9-]+) ===\n# [^\n]*\n(?P<text>.*?)\n(?==== )", re.DOTALL | re.MULTILINE)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


class Repair(StrEnum):
    """What :func:`seed_json` may change in a printed payload."""

    NBSP = "nbsp"
    TRAILING_COMMA = "trailing-comma"
    OPENING_BRACE = "opening-brace"
    CLOSING_BRACE = "closing-brace"


def _sections() -> dict[str, str]:
    return {m["name"]: m["text"] for m in _SECTION.finditer(SEED_FILE.read_text(encoding="utf-8"))}


def seed_names() -> list[str]:
    """The payloads the fixture holds, in the guide's order."""
    return list(_sections())


def seed_text(name: str) -> str:
    """A payload exactly as the guide prints it."""
    return _sections()[name]


def repaired(name: str) -> tuple[str, list[Repair]]:
    """The payload made into JSON text, and the repairs that took."""
    text, done = seed_text(name), []
    if "\u00a0" in text:
        text, done = text.replace("\u00a0", " "), [*done, Repair.NBSP]
    if _TRAILING_COMMA.search(text):
        text, done = _TRAILING_COMMA.sub(r"\1", text), [*done, Repair.TRAILING_COMMA]
    if not text.lstrip().startswith("{"):
        text, done = "{" + text, [*done, Repair.OPENING_BRACE]
    missing = text.count("{") - text.count("}")  # no brace occurs inside a string of the guide's payloads
    if missing > 0:
        text, done = text + "}" * missing, [*done, Repair.CLOSING_BRACE]
    return text, done


def seed_json(name: str) -> Any:
    """The payload as JSON, after :func:`repaired`."""
    return json.loads(repaired(name)[0])
