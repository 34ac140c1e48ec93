"""The ``--env-vars`` file that points ``sam local`` containers at a running local stack (``make run ARGS=--docker``).

The file carries every variable the template declares, with the local values, except:

* moto and the sandbox's API are reached as ``docker_host``: ``host.docker.internal`` for containers on Docker's
  bridge, where ``127.0.0.1`` is the container itself (the sandbox's certificate names it), or ``127.0.0.1`` for
  containers on the host network (``scripts/sam_cli.py``);
* ``BANK_CA_BUNDLE`` is the CA's PEM text rather than a path (a container cannot read the host's file);
* browser-facing URLs (login screens, OAuth callback, return URLs) keep ``127.0.0.1``: a browser on this machine
  opens them.

SAM CLI only overrides variables the template declares (``scripts/sam_local_env.py`` shows what a container
gets), which is why ``AWS_ENDPOINT_URL`` and ``BANK_CA_BUNDLE`` are declared in template.yaml for
``BankEnvironment=local``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from local.stack import RunningStack

SAM_ENV_FILE: Final = "sam-env.json"
DOCKER_HOST: Final = "host.docker.internal"


def sam_env_vars(stack: RunningStack, *, docker_host: str = DOCKER_HOST) -> dict[str, dict[str, str]]:
    """``{"Parameters": {...}}`` for ``sam local invoke/start-api --env-vars``, for every function."""
    ports = stack.ports
    moto_url = f"http://{docker_host}:{ports['moto']}"
    sandbox_origin = f"https://{docker_host}:{ports['sandbox']}"
    declared = sorted({name for spec in stack.app.functions.values() for name in spec.environment})
    values: dict[str, str] = {}
    for name in declared:
        value = stack.environment[name]
        value = value.replace(stack.moto_url, moto_url).replace(stack.sandbox.api_origin, sandbox_origin)
        values[name] = value
    values["AWS_ENDPOINT_URL"] = moto_url
    values["BANK_CA_BUNDLE"] = stack.sandbox.ca_path.read_text(encoding="ascii")
    return {"Parameters": values}


def write_sam_env(stack: RunningStack, path: Path, *, docker_host: str = DOCKER_HOST) -> Path:
    """Write :func:`sam_env_vars` to ``path`` (replacing it whole, never half-written) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(sam_env_vars(stack, docker_host=docker_host), indent=2) + "\n", encoding="utf-8")
    staging.replace(path)
    return path
