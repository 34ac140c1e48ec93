"""Driving `sam local` from the container suite: its commands, its long-running servers and what they leave behind.

Every command runs SAM CLI from its own venv (.tools/sam) through ``scripts.sam_cli``, which honours
``--docker-network host`` (see that module), with the offline-built image (``--invoke-image``, never pulled) and the
template ``sam build`` wrote. SAM CLI prints ``SAM_CONTAINER_ID: <id>`` for every container it creates; the
:class:`Janitor` removes exactly those, and the images SAM built during the session, once the suite is done.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".tools" / "sam" / "bin" / "python"
BUILD_DIR = ROOT / ".aws-sam" / "build"
CONTAINER_ID = re.compile(r"SAM_CONTAINER_ID: ([0-9a-f]{64})")
REGION = "eu-west-3"


def free_port() -> int:
    """A port nothing listens on now, on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def sam_environment() -> dict[str, str]:
    """SAM CLI's environment: this one (fake AWS keys, see tests/conftest.py), no telemetry, python3.13 on PATH."""
    python_bin = str(Path(sys.base_prefix) / "bin")  # sam build runs python3.13 from PATH
    return {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{python_bin}:{os.environ['PATH']}"}


def docker(*args: str, check: bool = True) -> str:
    """The docker CLI's stdout."""
    executable = shutil.which("docker")
    assert executable is not None, "the docker CLI is missing"
    done = subprocess.run([executable, *args], capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    assert done.returncode == 0 or not check, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


def exists(kind: str, name: str) -> bool:
    """Whether the engine has that container or image."""
    executable = shutil.which("docker")
    assert executable is not None, "the docker CLI is missing"
    done = subprocess.run([executable, kind, "inspect", name], capture_output=True, timeout=60, check=False)  # noqa: S603
    return done.returncode == 0


@dataclass
class Janitor:
    """Removes the containers SAM CLI created (by the ids it logged) and the images built during the session."""

    images_before: set[str] = field(default_factory=set)
    logs: list[Path] = field(default_factory=list)

    @classmethod
    def start(cls) -> Janitor:
        return cls(images_before=set(docker("image", "ls", "--all", "--quiet", "--no-trunc").split()))

    def watch(self, log: Path) -> Path:
        """Remember a SAM CLI output file whose containers must go."""
        self.logs.append(log)
        return log

    def containers(self) -> set[str]:
        """Every container id SAM CLI logged so far."""
        text = "".join(log.read_text(encoding="utf-8", errors="replace") for log in self.logs if log.exists())
        return set(CONTAINER_ID.findall(text))

    @staticmethod
    def tags(image: str) -> list[str]:
        """An image's repository tags."""
        return docker("image", "inspect", "--format", '{{join .RepoTags " "}}', image, check=False).split()

    def clean(self) -> list[str]:
        """Remove those containers, then the images that appeared meanwhile; what could not be removed."""
        left: list[str] = []
        for container in sorted(self.containers()):
            if exists("container", container):
                docker("container", "rm", "--force", "--volumes", container, check=False)
        # SAM CLI's images (samcli/lambda-...: base image + emulator + layer), then their untagged build steps.
        new = set(docker("image", "ls", "--all", "--quiet", "--no-trunc").split()) - self.images_before
        tagged = {image: self.tags(image) for image in new}
        ours = [image for image, tags in tagged.items() if tags and all(tag.startswith("samcli/") for tag in tags)]
        steps = [image for image, tags in tagged.items() if not tags]
        for image in [*ours, *steps]:
            if exists("image", image):
                docker("image", "rm", image, check=False)
        left += [f"image {image[7:19]} {tagged[image]}" for image in ours + steps if exists("image", image)]
        left += [f"container {c[:12]}" for c in self.containers() if exists("container", c)]
        return left


def sam_command(*args: str, image: str) -> list[str]:
    """``sam <args>`` on the host network with the offline-built image."""
    return [
        str(SAM_PYTHON),
        "-m",
        "scripts.sam_cli",
        *args,
        "--invoke-image",
        image,
        "--skip-pull-image",
        "--docker-network",
        "host",
    ]


@dataclass(frozen=True)
class Invocation:
    """What one `sam local invoke` printed: the function's result (stdout) and the container's log (stderr)."""

    result: Any
    log: str


def sam_invoke(
    function: str,
    event: Path,
    *,
    image: str,
    env_file: Path,
    log_dir: Path,
    janitor: Janitor,
    template: Path = BUILD_DIR / "template.yaml",
    extra: Sequence[str] = (),
) -> Invocation:
    """``sam local invoke FUNCTION -e EVENT --config-env local`` in a fresh container (docs/sam-local.md's command)."""
    log = janitor.watch(log_dir / f"invoke-{function}-{time.monotonic_ns()}.log")
    command = [
        *sam_command("local", "invoke", function, image=image),
        *("--event", str(event), "--template", str(template), "--config-env", "local"),
        *("--env-vars", str(env_file), *extra),
    ]
    with log.open("w", encoding="utf-8") as stderr:
        done = subprocess.run(  # noqa: S603 - fixed arguments
            command,
            cwd=ROOT,
            env=sam_environment(),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=300,
            check=False,
        )
    text = log.read_text(encoding="utf-8", errors="replace")
    assert done.returncode == 0, f"sam local invoke {function} exited {done.returncode}:\n{text[-3000:]}"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines, f"sam local invoke {function} printed no result:\n{text[-3000:]}"
    return Invocation(result=json.loads(lines[-1]), log=text)


def listen_to_ctrl_c() -> None:
    """In the child: SIGINT back to its default. A shell's background job (`make test &`, CI) starts with SIGINT
    ignored, Python then never turns it into KeyboardInterrupt, and SAM CLI would not stop its warm containers."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class SamServer:
    """``sam local start-lambda`` or ``start-api`` on a free loopback port, stopped like Ctrl-C (SIGINT)."""

    def __init__(self, command: Sequence[str], *, log: Path, ready_timeout: float = 240.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("w", encoding="utf-8") as output:
            self.process = subprocess.Popen(  # noqa: S603 - fixed arguments
                [*command, "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT,
                env=sam_environment(),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=listen_to_ctrl_c,  # noqa: PLW1509 - only a signal disposition, before exec
            )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"sam exited {self.process.returncode}:\n{self.tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                time.sleep(0.5)
                continue
            return
        self.stop()
        raise AssertionError(f"sam did not listen on {self.port} within {ready_timeout:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        """The end of SAM CLI's output."""
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def stop(self) -> bool:
        """SIGINT, as Ctrl-C (SAM CLI then stops and removes its warm containers), SIGKILL if it hangs; whether
        SAM CLI stopped by itself."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
                return False
        return True
