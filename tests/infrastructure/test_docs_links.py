"""The README and docs/ cannot rot: every relative link names a file that exists, and every #anchor a heading in it.

The pages checked are the README, every ``docs/*.md`` and the README of each top-level folder. A link's target is
resolved from the page's own folder; an anchor is matched against the target's headings the way GitHub makes them
(lower case, punctuation dropped, spaces to hyphens, ``-1``, ``-2``... for repeats). Links inside code (fenced
blocks, inline backticks) and links to other sites are not links to check.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.infrastructure

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"`[^`]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def pages(root: Path) -> list[Path]:
    """The README, every page of docs/ and the README of each top-level folder."""
    found = [root / "README.md", *sorted((root / "docs").glob("*.md")), *sorted(root.glob("*/README.md"))]
    return [page for page in found if page.is_file()]


def _prose_lines(text: str) -> list[str]:
    """The page's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings."""
    seen: dict[str, int] = {}
    result = set()
    for line in _prose_lines(page.read_text(encoding="utf-8")):
        heading = _HEADING.match(line)
        if heading is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(2).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def broken_links(page: Path, root: Path) -> list[str]:
    """Each relative link of ``page`` whose file or anchor does not exist, as ``target: why``."""
    broken = []
    for line in _prose_lines(page.read_text(encoding="utf-8")):
        for match in _LINK.finditer(_INLINE_CODE.sub("", line)):
            target = match.group(1)
            if _SCHEME.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            resolved = (page.parent / path_part).resolve() if path_part else page
            if not resolved.is_relative_to(root.resolve()):
                broken.append(f"{target}: outside the repository")
            elif not resolved.exists():
                broken.append(f"{target}: no such file")
            elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
                broken.append(f"{target}: no heading #{anchor}")
    return broken


def test_the_pages_checked_include_the_readme_and_every_design_page() -> None:
    checked = {page.relative_to(REPO_ROOT).as_posix() for page in pages(REPO_ROOT)}
    assert {"README.md", "bench/README.md", "local/README.md", "sandbox/README.md"} <= checked
    assert {page.relative_to(REPO_ROOT).as_posix() for page in (REPO_ROOT / "docs").glob("*.md")} <= checked


@pytest.mark.parametrize("page", pages(REPO_ROOT), ids=lambda page: page.relative_to(REPO_ROOT).as_posix())
def test_every_relative_link_points_at_something_that_exists(page: Path) -> None:
    assert broken_links(page, REPO_ROOT) == []


def test_the_readme_links_every_design_page() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for page in (REPO_ROOT / "docs").glob("*.md"):
        assert f"](docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"


def test_a_missing_file_a_missing_heading_and_a_way_out_are_reported(tmp_path: Path) -> None:
    # Given a small tree whose page links a file that exists, one that does not, headings that do and do not exist
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "refresh.md").write_text("# Refresh\n\n## The lease\n\n## The lease\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "# Gateway\n\n"
        "[ok](docs/refresh.md) [ok](docs/refresh.md#the-lease) [ok](docs/refresh.md#the-lease-1) [ok](#gateway)\n"
        "[gone](docs/gone.md) [bad anchor](docs/refresh.md#backoff) [up](../elsewhere.md) [web](https://example.com/x)\n"
        "`[in code](docs/nothing.md)`\n\n```\n[in a block](docs/nothing.md)\n```\n",
        encoding="utf-8",
    )
    # When its links are checked, then exactly the three broken ones are named, with why
    assert broken_links(tmp_path / "README.md", tmp_path) == [
        "docs/gone.md: no such file",
        "docs/refresh.md#backoff: no heading #backoff",
        "../elsewhere.md: outside the repository",
    ]
