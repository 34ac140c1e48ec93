"""The container engine for `sam local` (`make docker`): Debian's docker.io, installed and started when it can be.

``start`` installs ``docker.io`` with apt when ``dockerd`` is missing (root only, like `make browser` does for
Chromium) and starts ``dockerd`` when nothing answers on its socket. When neither is possible it says why, writes
the reason to ``.tools/docker/unavailable`` and exits 0: the container tests then skip with that reason.
``run -- CMD...`` starts the engine the same way, runs CMD, and stops the daemon afterwards if it started it (this
is how `make test` leaves no process behind). ``stop`` stops a daemon ``start`` left running. ``status`` prints
what a test would see. Stdlib only: it runs before any venv exists.

Usage (from the repository root): python -m scripts.docker_engine {start,stop,status,run -- CMD...}
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
STATE_DIR: Final = ROOT / ".tools" / "docker"
PID_FILE: Final = STATE_DIR / "dockerd.pid"
LOG_FILE: Final = STATE_DIR / "dockerd.log"
UNAVAILABLE_FILE: Final = STATE_DIR / "unavailable"
DEFAULT_SOCKET: Final = "/var/run/docker.sock"
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 30.0
_children: dict[int, subprocess.Popen[bytes]] = {}  # daemons started by this process, to reap once stopped


class EngineUnavailableError(Exception):
    """The engine cannot run here; the message says why in one line."""


def socket_path() -> str:
    """The daemon's unix socket (``DOCKER_HOST=unix://...`` or Docker's default)."""
    host = os.environ.get("DOCKER_HOST", "")
    return host.removeprefix("unix://") if host.startswith("unix://") else DEFAULT_SOCKET


def ping(timeout: float = 5.0) -> bool:
    """Whether a daemon answers ``GET /_ping`` on the socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout)
            client.connect(socket_path())
            client.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = client.recv(1024)
    except OSError:
        return False
    return answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0]


def problem() -> str | None:
    """Why containers cannot run here now (None when a daemon answers), with what `make docker` last said."""
    if ping():
        return None
    recorded = UNAVAILABLE_FILE.read_text(encoding="utf-8").strip() if UNAVAILABLE_FILE.exists() else ""
    if recorded:
        return recorded
    if dockerd() is None:
        return "dockerd is not installed: `make docker` installs Debian's docker.io (as root)"
    return f"no Docker daemon answers on {socket_path()}: `make docker` starts one (as root)"


def dockerd() -> str | None:
    """The daemon's executable, if installed (root's PATH has /usr/sbin; others may not)."""
    return shutil.which("dockerd") or next(
        (p for p in ("/usr/sbin/dockerd", "/usr/bin/dockerd") if Path(p).exists()), None
    )


def install() -> None:
    """``apt-get install docker.io`` (root only)."""
    if os.geteuid() != 0:
        raise EngineUnavailableError("dockerd is not installed and installing docker.io needs root")
    if shutil.which("apt-get") is None:
        raise EngineUnavailableError("dockerd is not installed and there is no apt-get to install docker.io")
    print("docker: installing Debian's docker.io", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "docker.io"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise EngineUnavailableError(f"`{' '.join(command)}` failed: {detail}")
    if dockerd() is None:
        raise EngineUnavailableError("docker.io was installed but dockerd is still not found")


def start_daemon(executable: str) -> int:
    """Start ``dockerd`` in its own session, logging to .tools/docker/dockerd.log; its pid once it answers."""
    if os.geteuid() != 0:
        raise EngineUnavailableError(f"no Docker daemon answers on {socket_path()} and starting dockerd needs root")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with LOG_FILE.open("ab") as log:
        daemon = subprocess.Popen(  # noqa: S603 - the installed dockerd, fixed arguments
            [executable], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ping(timeout=1.0):
            PID_FILE.write_text(f"{daemon.pid}\n", encoding="ascii")
            _children[daemon.pid] = daemon
            return daemon.pid
        if daemon.poll() is not None:
            raise EngineUnavailableError(f"dockerd exited with status {daemon.returncode}: {last_log_line()}")
        time.sleep(0.5)
    daemon.terminate()
    daemon.wait(timeout=STOP_TIMEOUT_S)
    raise EngineUnavailableError(f"dockerd did not answer within {START_TIMEOUT_S:.0f} s: {last_log_line()}")


def last_log_line() -> str:
    """The daemon log's last error (or last line): the reason it gives for not running."""
    lines = LOG_FILE.read_text(encoding="utf-8", errors="replace").splitlines() if LOG_FILE.exists() else []
    errors = [line for line in lines if "level=error" in line or "level=fatal" in line]
    return (errors or lines or [f"see {LOG_FILE}"])[-1][-300:]


def start() -> int | None:
    """Make a daemon answer; the pid of the one started here (None if one was already running).

    Raises
    ------
    EngineUnavailableError
        Docker cannot run on this machine, with the reason.
    """
    if ping():
        UNAVAILABLE_FILE.unlink(missing_ok=True)
        return None
    executable = dockerd()
    if executable is None:
        install()
        executable = dockerd()
    assert executable is not None  # noqa: S101 - install() raises otherwise
    pid = start_daemon(executable)
    UNAVAILABLE_FILE.unlink(missing_ok=True)
    return pid


def start_or_explain() -> int | None:
    """:func:`start`, printing and recording the reason instead of failing when Docker cannot run."""
    try:
        pid = start()
    except EngineUnavailableError as error:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        UNAVAILABLE_FILE.write_text(f"{error}\n", encoding="utf-8")
        print(f"docker: unavailable, the container tests will be skipped: {error}", file=sys.stderr)
        return None
    print(f"docker: dockerd started (pid {pid}, log {LOG_FILE})" if pid else "docker: dockerd is running")
    return pid


def running_containers() -> list[str]:
    """Ids of the containers running now (anyone's)."""
    docker = shutil.which("docker")
    if docker is None:
        return []
    done = subprocess.run([docker, "ps", "-q"], capture_output=True, text=True, check=False, timeout=30)  # noqa: S603
    return done.stdout.split()


def command_line(pid: int) -> bytes:
    """A running process's command line; empty once it has exited (a zombie's is empty too)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def stop(pid: int | None = None) -> None:
    """Stop the daemon this script started (``pid``, else the one in .tools/docker/dockerd.pid), never another.

    A daemon that still runs containers is left alone: someone else is using it.
    """
    if pid is None:
        if not PID_FILE.exists():
            print("docker: no dockerd started by `make docker` here")
            return
        pid = int(PID_FILE.read_text(encoding="ascii").strip())
    if b"dockerd" not in command_line(pid):
        PID_FILE.unlink(missing_ok=True)
        return
    if containers := running_containers():
        print(f"docker: dockerd left running: {len(containers)} container(s) still run")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while command_line(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if command_line(pid):
        os.kill(pid, signal.SIGKILL)
    if (child := _children.pop(pid, None)) is not None:
        child.wait(timeout=STOP_TIMEOUT_S)  # our own child: reap it rather than leave a zombie
    PID_FILE.unlink(missing_ok=True)
    print(f"docker: dockerd stopped (pid {pid})")


def run(command: Sequence[str]) -> int:
    """Run ``command`` with the engine started; stop the daemon afterwards if it was started here."""
    started = start_or_explain()
    try:
        return subprocess.run(command, check=False).returncode  # noqa: S603 - the caller's own command
    finally:
        if started is not None:
            stop(started)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m scripts.docker_engine", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "status", "run"])
    parser.add_argument("command", nargs=argparse.REMAINDER, help="for run: -- CMD [ARGS...]")
    args = parser.parse_args(argv)
    if args.action == "start":
        start_or_explain()
    elif args.action == "stop":
        stop()
    elif args.action == "status":
        reason = problem()
        print(reason or f"docker: a daemon answers on {socket_path()}")
        return 1 if reason else 0
    else:
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("run needs a command: run -- CMD [ARGS...]")
        return run(command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
