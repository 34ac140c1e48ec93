"""The environment `sam local invoke --config-env local` gives a function's container, computed without Docker.

What decides whether a container reaches the running local stack is its environment, and SAM CLI builds that
environment before it starts any container: the template's variables after intrinsic resolution with the parameter
overrides, then the ``--env-vars`` file, which can only override variables the template declares. This script runs
that same SAM CLI code (so it needs SAM CLI's venv, ``.tools/sam``, but no container engine) with the options of a
samconfig.toml environment and prints the result as JSON. ``tests/e2e/test_sam_local.py`` checks it where Docker
cannot run; tests/containers runs the containers themselves.

Usage (from the repository root):
  .tools/sam/bin/python -m scripts.sam_local_env FUNCTION [--config-env local] [--env-vars FILE]
      [--template template.yaml] [--command local_invoke]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def container_environment(
    template: Path, function: str, *, config_env: str, command: str, env_vars: Path | None
) -> dict[str, str]:
    """The variables SAM CLI would set in ``function``'s container for ``sam <command> --config-env <config_env>``.

    Raises
    ------
    SystemExit
        The function is not in the template, or the config environment has no such command section.
    """
    # SAM CLI is imported here: it lives in its own venv, and importing this module must not need it.
    from samcli.cli.types import CfnParameterOverridesType  # noqa: PLC0415
    from samcli.commands.local.lib.local_lambda import LocalLambdaRunner  # noqa: PLC0415
    from samcli.lib.config.samconfig import SamConfig  # noqa: PLC0415
    from samcli.lib.providers.sam_function_provider import SamFunctionProvider  # noqa: PLC0415
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider  # noqa: PLC0415

    config = SamConfig(str(template.parent))
    options: dict[str, Any] = {}
    for section in ("global", command):
        options.update(config.get_all(section.split("_"), "parameters", env=config_env))
    if not options:
        raise SystemExit(f"samconfig.toml has no [{config_env}.{command}.parameters]")
    overrides = CfnParameterOverridesType().convert(options.get("parameter_overrides", ""), None, None)
    region = str(options.get("region", "us-east-1"))
    stacks, _ = SamLocalStackProvider.get_stacks(
        str(template), parameter_overrides=overrides, global_parameter_overrides={"AWS::Region": region}
    )
    provider = SamFunctionProvider(stacks)
    resolved = provider.get(function)
    if resolved is None:
        raise SystemExit(f"no function {function!r} in {template}")
    env_file = env_vars or (Path(options["env_vars"]) if "env_vars" in options else None)
    values = json.loads(env_file.read_text(encoding="utf-8")) if env_file is not None else {}
    runner = LocalLambdaRunner(
        local_runtime=None,  # no container is started: only the environment is built
        function_provider=provider,
        cwd=str(template.parent),
        real_path=str(template.parent),
        aws_region=region,
        env_vars_values=values,
    )
    environment: dict[str, str] = runner._make_env_vars(resolved).resolve()  # noqa: SLF001 - SAM CLI's own step
    return environment


def main(argv: Sequence[str] | None = None) -> int:
    """Print the container environment as JSON."""
    parser = argparse.ArgumentParser(prog="python -m scripts.sam_local_env", description=__doc__.splitlines()[0])
    parser.add_argument("function", help="logical id, e.g. AccountsFunction")
    parser.add_argument("--template", type=Path, default=Path("template.yaml"))
    parser.add_argument("--config-env", default="local", help="samconfig.toml environment (default: local)")
    parser.add_argument("--command", default="local_invoke", help="samconfig.toml command section")
    parser.add_argument("--env-vars", type=Path, default=None, help="instead of the config's env_vars file")
    args = parser.parse_args(argv)
    environment = container_environment(
        args.template.resolve(),
        args.function,
        config_env=args.config_env,
        command=args.command,
        env_vars=args.env_vars,
    )
    json.dump(environment, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
