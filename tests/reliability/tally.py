"""Counts of the reliability suite (issue #8), printed at the end of every pytest run.

Tests record what they exercised (``record("faults", cases=1)``) and what went wrong in a way the suite forbids
(``server_errors``: a 5xx the API must never answer, ``leaks``: a secret found in a log line). The root conftest's
``pytest_terminal_summary`` prints one line per suite, so `make test`'s output says how much was checked, not only
that it passed. A count is only added by code that also asserts: the figures describe checks that can fail.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass


@dataclass
class SuiteCount:
    """One suite's running totals."""

    cases: int = 0
    server_errors: int = 0
    leaks: int = 0


_lock = threading.Lock()
_counts: defaultdict[str, SuiteCount] = defaultdict(SuiteCount)


def record(suite: str, *, cases: int = 1, server_errors: int = 0, leaks: int = 0) -> None:
    """Add to ``suite``'s totals (thread-safe: tests may drive handlers from several threads)."""
    with _lock:
        count = _counts[suite]
        count.cases += cases
        count.server_errors += server_errors
        count.leaks += leaks


def summary_lines() -> list[str]:
    """The lines the terminal summary prints (empty when no reliability test ran)."""
    with _lock:
        items = sorted(_counts.items())
    return [
        f"  {suite:<22} {count.cases:6d} cases  {count.server_errors:3d} x 5xx  {count.leaks:3d} leaks"
        for suite, count in items
    ]
