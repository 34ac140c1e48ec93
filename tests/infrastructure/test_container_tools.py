"""The container tooling's own rules, checked without Docker: what goes into the Lambda image and what names it
(scripts/lambda_image.py), and how `make docker` decides that an engine answers or why none does
(scripts/docker_engine.py). The containers themselves are tests/containers.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
from pathlib import Path

import pytest

from scripts import docker_engine, lambda_image

pytestmark = pytest.mark.infrastructure


@pytest.mark.parametrize(
    ("relative", "kept"),
    [
        ("os.py", True),
        ("json/__init__.py", True),
        ("lib-dynload/_ssl.cpython-313-x86_64-linux-gnu.so", True),
        ("__pycache__/os.cpython-313.pyc", True),
        ("__pycache__/os.cpython-313.opt-1.pyc", False),
        ("test/test_os.py", False),
        ("tkinter/__init__.py", False),
        ("lib-dynload/_tkinter.cpython-313-x86_64-linux-gnu.so", False),
        ("idlelib/idle.py", False),
        ("site-packages/_sandboxing_egress_ca.pth", False),  # the host's own packages and .pth hooks stay out
        ("config-3.13-x86_64-linux-gnu/libpython3.13.a", False),
    ],
)
def test_the_image_takes_the_standard_library_a_function_can_import(relative, kept):
    assert lambda_image.keep_stdlib_file(Path(relative)) is kept


def test_the_image_name_follows_every_input_and_only_them():
    # Given this machine's inputs, read twice
    try:
        inputs = lambda_image.collect_inputs(lambda_image.DEFAULT_PYTHON)
    except lambda_image.ImageUnavailableError as error:
        pytest.skip(f"no image can be made here: {error}")

    # Then the same digest each time, under the house's repository name
    assert lambda_image.collect_inputs(lambda_image.DEFAULT_PYTHON).digest == inputs.digest
    assert inputs.tag == f"aisp-lambda-python:3.13-{inputs.digest[:12]}"
    # and another package, mirror, suite or interpreter file means another image
    others = [
        dataclasses.replace(inputs, packages=(*inputs.packages, "tzdata")),
        dataclasses.replace(inputs, mirror="http://mirror.example.org/debian"),
        dataclasses.replace(inputs, suite="trixie"),
        dataclasses.replace(inputs, python_files=inputs.python_files[:-1]),
    ]
    assert len({inputs.digest, *(other.digest for other in others)}) == 1 + len(others)
    # and the libraries the interpreter links come with it (ssl, ctypes, sqlite3...)
    assert {"libssl3", "libffi8", "libsqlite3-0", "ca-certificates"} <= set(inputs.packages)


def serve_once(path: Path, answer: bytes) -> threading.Thread:
    """A unix socket at ``path`` answering one request with ``answer``."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def _serve() -> None:
        with server:
            connection, _ = server.accept()
            with connection:
                connection.recv(1024)
                connection.sendall(answer)

    thread = threading.Thread(target=_serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("answer", "alive"), [(b"HTTP/1.1 200 OK\r\n\r\nOK", True), (b"HTTP/1.1 503 X\r\n\r\n", False)]
)
def test_an_engine_is_up_when_its_socket_answers_ping_with_200(tmp_path, monkeypatch, answer, alive):
    # Given a daemon socket that answers as given
    path = tmp_path / "docker.sock"
    thread = serve_once(path, answer)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")

    # Then only a 200 counts
    assert docker_engine.ping(timeout=5) is alive
    thread.join(timeout=5)


def test_without_an_engine_the_reason_make_docker_recorded_is_what_tests_say(tmp_path, monkeypatch):
    # Given no daemon on the socket, and what `make docker` wrote when it could not start one
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'missing.sock'}")
    recorded = tmp_path / "unavailable"
    monkeypatch.setattr(docker_engine, "UNAVAILABLE_FILE", recorded)
    assert "make docker" in (docker_engine.problem() or "")

    recorded.write_text("dockerd exited with status 1: failed to mount overlay\n", encoding="utf-8")

    # Then the skip reason is that one
    assert docker_engine.problem() == "dockerd exited with status 1: failed to mount overlay"


def test_stop_never_signals_a_process_that_is_not_a_dockerd(tmp_path, monkeypatch):
    # Given a pid file naming this very test process (not a dockerd)
    pid_file = tmp_path / "dockerd.pid"
    pid_file.write_text(f"{os.getpid()}\n", encoding="ascii")
    monkeypatch.setattr(docker_engine, "PID_FILE", pid_file)

    # When `stop` runs, this process survives (we are still here) and the stale pid file is gone
    docker_engine.stop()
    assert not pid_file.exists()
