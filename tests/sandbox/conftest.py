"""Fixtures for the offline 89C3 sandbox tests: one sandbox per module on free ports, real HTTPS with mTLS.

Every test gets a :class:`~tests.sandbox.helpers.SandboxClient` on a freshly reset sandbox (tokens, consents,
quotas, faults and clock back to their start-up state), so tests never depend on each other's order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.certs import ensure_certificates
from sandbox.server import RunningSandbox, SandboxConfig, start_sandbox
from tests.sandbox.helpers import OTHER_REDIRECT_URI, REDIRECT_URI, SandboxClient


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PKI for the whole session (RSA key generation is the slowest part of a start)."""
    directory = tmp_path_factory.mktemp("sandbox-certs")
    ensure_certificates(directory)
    return directory


@pytest.fixture(scope="module")
def sandbox(certs_dir: Path) -> Iterator[RunningSandbox]:
    """A sandbox with the admin API on, for the whole module."""
    config = SandboxConfig(
        port=0,
        screens_port=0,
        certs_dir=certs_dir,
        admin=True,
        redirect_uris=(REDIRECT_URI, OTHER_REDIRECT_URI),
    )
    with start_sandbox(config) as running:
        yield running


@pytest.fixture
def client(sandbox: RunningSandbox) -> Iterator[SandboxClient]:
    """A TPP + browser client on a reset sandbox."""
    with SandboxClient(sandbox) as tpp:
        tpp.reset()
        yield tpp
