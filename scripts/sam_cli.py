"""SAM CLI with ``--docker-network host`` honoured: the Lambda containers share this machine's network.

SAM CLI accepts ``--docker-network host`` but leaves the container on Docker's default bridge: it only skips
connecting it to the ``host`` network (samcli/local/docker/container.py; aws/aws-sam-cli#4236, fix proposed in
aws/aws-sam-cli#7278 and not merged). A function then cannot reach a server on this machine's loopback, such as
the local stack's moto and sandbox. This entry point is ``sam`` with one change, made only for that network: the
container is created with ``network_mode=host``, and the runtime interface emulator, which then shares this
machine's ports, listens on two free loopback ports instead of 0.0.0.0:8080 and 127.0.0.1:9001. Everything else is
SAM CLI's own code. It runs in SAM CLI's venv (.tools/sam); docs/sam-local.md says when to use it.

Usage (from the repository root): .tools/sam/bin/python -m scripts.sam_cli local invoke ... --docker-network host
"""

from __future__ import annotations

import sys
from typing import Any, Final

HOST_NETWORK: Final = "host"
LOOPBACK: Final = "127.0.0.1"
RIE: Final = "/var/rapid/aws-lambda-rie"


def honour_host_network() -> None:
    """Patch SAM CLI's container creation so that ``--docker-network host`` means the host's network namespace."""
    # SAM CLI is imported here: it lives in its own venv, and importing this module must not need it.
    from docker.models.containers import ContainerCollection  # type: ignore[import-untyped]  # noqa: PLC0415
    from samcli.local.docker.container import Container  # noqa: PLC0415
    from samcli.local.docker.utils import find_free_port  # noqa: PLC0415

    create = Container.create
    create_container = ContainerCollection.create

    def create_container_without_ports(self: Any, image: str, command: Any = None, **kwargs: Any) -> Any:
        if kwargs.get("network_mode") == HOST_NETWORK:
            kwargs.pop("ports", None)  # Docker refuses published ports on the host network (there is no mapping)
        return create_container(self, image, command, **kwargs)

    def create_on_host_network(self: Any, context: Any) -> Any:
        if self.network_id == HOST_NETWORK:
            self._container_opts = {**(self._container_opts or {}), "network_mode": HOST_NETWORK}
            entrypoint = list(self._entrypoint or [])
            if entrypoint[:1] == [RIE]:
                api_port = self.rapid_port_host
                while api_port == self.rapid_port_host:
                    api_port = find_free_port(network_interface=LOOPBACK)
                self._entrypoint = [
                    *entrypoint,
                    f"--runtime-interface-emulator-address={LOOPBACK}:{self.rapid_port_host}",
                    f"--runtime-api-address={LOOPBACK}:{api_port}",
                ]
        return create(self, context)

    Container.create = create_on_host_network
    ContainerCollection.create = create_container_without_ports


def main() -> int:
    """Run ``sam`` with the arguments given, host network honoured."""
    from samcli.cli.main import cli  # noqa: PLC0415

    honour_host_network()
    sys.argv[0] = "sam"
    cli()  # click exits by itself
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
