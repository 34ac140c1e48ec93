"""Fixtures shared by the reliability suite (issue #8).

``state_dir`` (tests/e2e/conftest.py): the sandbox PKI, created once per session, for the suites that start the
whole local stack (bad input, isolation, log redaction).
"""

from __future__ import annotations

from tests.e2e.conftest import state_dir  # noqa: F401 - re-exported fixture
