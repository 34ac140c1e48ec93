"""The error tree drawn in ``aisp.errors``' docstring is the real one, and every branch maps to its drawn status."""

from __future__ import annotations

import re

import pytest

from aisp import errors
from aisp.api.errors import classify
from aisp.signing import http_signature

_LINE = re.compile(r"^(?P<indent>[\s│]*)(?:[├└]── )?(?P<name>[A-Za-z]+Error)\b\s*(?P<note>.*)$")


def _drawn() -> dict[str, tuple[str | None, str]]:
    """``{class name: (drawn parent, note)}`` read from the docstring's tree."""
    drawing = errors.__doc__.split("::", 1)[1]
    stack: list[tuple[int, str]] = []
    tree: dict[str, tuple[str | None, str]] = {}
    for line in drawing.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        depth = len(match["indent"]) + (4 if "──" in line else 0)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        tree[match["name"]] = (stack[-1][1] if stack else None, match["note"].strip())
        stack.append((depth, match["name"]))
    return tree


def _real() -> dict[str, str | None]:
    """``{class name: parent name}`` for every subclass of AispError the package defines."""
    assert http_signature.SignatureError  # the one subclass defined outside aisp.errors
    found: dict[str, str | None] = {"AispError": None}
    pending: list[type[errors.AispError]] = [errors.AispError]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("aisp."):
                found[sub.__name__] = cls.__name__
                pending.append(sub)
    return found


def test_the_drawing_names_every_error_under_its_real_parent() -> None:
    drawn = {name: parent for name, (parent, _) in _drawn().items()}

    assert drawn == _real()


@pytest.mark.parametrize(
    ("name", "note"), [(name, note) for name, (_, note) in _drawn().items() if re.match(r"^\d{3}\b", note)]
)
def test_a_drawn_status_is_the_one_the_api_answers(name: str, note: str) -> None:
    cls = getattr(errors, name)
    error = cls.__new__(cls)
    errors.AispError.__init__(error, "drawn")

    status, _, _ = classify(error)

    assert status == int(note[:3])
