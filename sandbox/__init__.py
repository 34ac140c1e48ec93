"""The offline 89C3 sandbox: a BPCE STET bank (OAuth2 screens, token authority, AISP API) for local use and tests.

Run it with ``python -m sandbox`` or from Python with :func:`sandbox.server.start_sandbox`. Certificates come from
``python -m sandbox.certs DIR``. See ``sandbox/README.md`` for personas, fault switches and quotas. This package is
never deployed; it depends on the gateway only for ``aisp.signing.verify_request``.

Importing the package loads nothing: ``SandboxConfig``, ``Settings``, ``RunningSandbox`` and ``start_sandbox`` are
resolved on first use, so ``python -m sandbox.certs`` works without the gateway on the path.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.server import RunningSandbox, SandboxConfig, start_sandbox
    from sandbox.store import Settings

__all__ = ["RunningSandbox", "SandboxConfig", "Settings", "start_sandbox"]

_EXPORTS = {
    "RunningSandbox": "sandbox.server",
    "SandboxConfig": "sandbox.server",
    "start_sandbox": "sandbox.server",
    "Settings": "sandbox.store",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
