"""Build the Lambda-like python3.13 base image for `sam local --invoke-image` offline (`make lambda-image`).

AWS's ``public.ecr.aws/lambda/python:3.13`` cannot be pulled here, so the image is made from packages: a Debian
root filesystem (``debootstrap --variant=minbase`` from the mirror apt already uses, plus the Debian packages of
the shared libraries the interpreter links), this machine's Python 3.13 under ``/var/lang`` (its standard library,
without tests, Tk or site-packages), ``awslambdaric`` from PyPI (pinned with hashes in
``scripts/lambda-image/requirements.txt``) in ``/var/runtime``, and ``/var/runtime/bootstrap`` starting it. SAM CLI
adds its runtime interface emulator and the layers (``/opt``) on top. It is ``docker import``-ed as
``aisp-lambda-python:3.13-<digest>``, where the digest covers every input (this recipe, the interpreter's files,
the package list, mirror, suite and pins), and tagged ``aisp-lambda-python:3.13``. An image with the same digest is
never rebuilt. How it differs from AWS's image: docs/sam-local.md.

Usage (from the repository root, as root): python -m scripts.lambda_image [--python PREFIX] [--print-tag]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from scripts import docker_engine

ROOT: Final = Path(__file__).resolve().parent.parent
RECIPE_DIR: Final = Path(__file__).resolve().parent / "lambda-image"
REPOSITORY: Final = "aisp-lambda-python"
ALIAS: Final = f"{REPOSITORY}:3.13"
DEFAULT_PYTHON: Final = Path(sys.base_prefix)  # the interpreter running this (the Makefile's python3.13)
UNAVAILABLE_FILE: Final = docker_engine.STATE_DIR / "lambda-image.unavailable"
PY_VERSION: Final = "3.13"
# Parts of the standard library a Lambda function never imports (the AWS image ships without them either).
SKIPPED_STDLIB: Final = ("test", "idlelib", "tkinter", "turtledemo", "ensurepip", "site-packages")
EXTRA_PACKAGES: Final = ("ca-certificates",)  # the system trust store Python's ssl defaults to
SLIMMED: Final = ("var/cache/apt/archives", "var/lib/apt/lists", "var/log", "usr/share/doc", "usr/share/man")
IMAGE_ENV: Final = {
    "LANG": "C.UTF-8",
    "TZ": ":/etc/localtime",
    "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
    "LAMBDA_TASK_ROOT": "/var/task",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
}


class ImageUnavailableError(Exception):
    """The image cannot be built on this machine (no engine, no root...); the message says why."""


@dataclass(frozen=True)
class Inputs:
    """Everything the image is made from; :attr:`digest` names the image."""

    python: Path
    python_version: str
    python_files: tuple[Path, ...]
    packages: tuple[str, ...]
    mirror: str
    suite: str

    def describe(self) -> dict[str, object]:
        """The inputs as data: written into the image as /etc/aisp-lambda-image.json."""
        return {
            "recipe": sha256_of(sorted([Path(__file__), *RECIPE_DIR.iterdir()])),
            "python": sha256_of(self.python_files, base=self.python),
            "python_version": self.python_version,
            "packages": list(self.packages),
            "mirror": self.mirror,
            "suite": self.suite,
            "architecture": platform.machine(),
        }

    @property
    def digest(self) -> str:
        """sha256 of :meth:`describe`."""
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()

    @property
    def tag(self) -> str:
        """``aisp-lambda-python:3.13-<first 12 hex digits of the digest>``."""
        return f"{REPOSITORY}:{PY_VERSION}-{self.digest[:12]}"


def sha256_of(files: Sequence[Path], *, base: Path | None = None) -> str:
    """One digest over the files' names (relative to ``base``), modes and contents."""
    total = hashlib.sha256()
    for path in files:
        name = str(path.relative_to(base)) if base else path.name
        total.update(f"{name}\0{path.lstat().st_mode:o}\0".encode())
        total.update(str(path.readlink()).encode() if path.is_symlink() else hashlib.sha256(path.read_bytes()).digest())
    return total.hexdigest()


def python_files(prefix: Path) -> tuple[Path, ...]:
    """The interpreter, libpython and the standard library a function can import, sorted."""
    stdlib = prefix / "lib" / f"python{PY_VERSION}"
    if not (stdlib / "os.py").exists():
        raise ImageUnavailableError(f"{prefix} is not a Python {PY_VERSION} installation (no {stdlib}/os.py)")
    files = [prefix / "bin" / f"python{PY_VERSION}", prefix / "lib" / f"libpython{PY_VERSION}.so.1.0"]
    files += [path for path in walk(stdlib) if keep_stdlib_file(path.relative_to(stdlib))]
    return tuple(sorted(files))


def walk(top: Path) -> Iterator[Path]:
    """Every file and symlink under ``top``."""
    for directory, _, names in os.walk(top):
        for name in names:
            yield Path(directory) / name


def keep_stdlib_file(relative: Path) -> bool:
    """Whether a file of lib/python3.13 goes into the image."""
    parts = relative.parts
    if parts[0] in SKIPPED_STDLIB or parts[0].startswith("config-"):
        return False
    if parts[0] == "lib-dynload" and relative.name.startswith("_tkinter"):
        return False
    return not (relative.suffix == ".pyc" and ".opt-" in relative.name)


def shared_library_packages(files: Sequence[Path], *, prefix: Path) -> tuple[str, ...]:
    """The Debian packages owning the shared libraries the ELF files among ``files`` link (ldd + dpkg -S)."""
    libraries: set[str] = set()
    for path in files:
        if path.suffix != ".so" and not path.name.startswith(("python", "libpython")):
            continue
        listing = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False).stdout  # noqa: S603
        libraries.update(re.findall(r"=> (/\S+) \(", listing))
    packages: set[str] = set()
    for library in sorted(libraries):
        if Path(library).is_relative_to(prefix):
            continue  # libpython itself, copied with the interpreter
        packages.add(owning_package(library))
    return tuple(sorted(packages | set(EXTRA_PACKAGES)))


def owning_package(library: str) -> str:
    """``dpkg -S`` for a library path, trying its /usr-merged spellings."""
    resolved = os.path.realpath(library)
    for candidate in dict.fromkeys((library, resolved, f"/usr{library}", f"/usr{resolved}")):
        done = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode == 0:
            return done.stdout.split(":", 1)[0].strip()
    raise ImageUnavailableError(f"no Debian package owns {library} (dpkg -S): cannot pick the image's libraries")


def apt_mirror() -> tuple[str, str]:
    """(mirror URI, suite) of the Debian archive apt uses here, from /etc/os-release and apt's sources."""
    release = Path("/etc/os-release")
    fields = (
        dict(line.split("=", 1) for line in release.read_text(encoding="utf-8").splitlines() if "=" in line)
        if release.exists()
        else {}
    )
    suite = fields.get("VERSION_CODENAME", "").strip('"')
    if not suite:
        raise ImageUnavailableError("not a Debian system (no VERSION_CODENAME in /etc/os-release)")
    sources = Path("/etc/apt/sources.list.d")
    stanzas = [
        stanza
        for path in sorted(sources.glob("*.sources"))
        if sources.exists()
        for stanza in path.read_text(encoding="utf-8").split("\n\n")
    ]
    for stanza in stanzas:
        values = dict(line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#"))
        if suite in values.get("Suites", "").split() and "deb" in values.get("Types", "").split():
            return values["URIs"].split()[0], suite
    listing = Path("/etc/apt/sources.list")
    for line in listing.read_text(encoding="utf-8").splitlines() if listing.exists() else []:
        words = line.split()
        if words[:1] == ["deb"] and suite in words:
            return next(word for word in words[1:] if "://" in word), suite
    return "http://deb.debian.org/debian", suite


def collect_inputs(python: Path) -> Inputs:
    """Read every input of the image (no network, no root)."""
    files = python_files(python)
    version = subprocess.run(  # noqa: S603 - the interpreter going into the image
        [str(python / "bin" / f"python{PY_VERSION}"), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    mirror, suite = apt_mirror()
    packages = shared_library_packages(files, prefix=python)
    return Inputs(
        python=python, python_version=version, python_files=files, packages=packages, mirror=mirror, suite=suite
    )


def docker(*args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    """The docker CLI."""
    executable = shutil.which("docker")
    if executable is None:
        raise ImageUnavailableError("the docker CLI is not installed: `make docker`")
    return subprocess.run([executable, *args], capture_output=capture, text=True, check=False)  # noqa: S603


def image_exists(tag: str) -> bool:
    """Whether the engine has an image named ``tag``."""
    return docker("image", "inspect", "--format", "{{.Id}}", tag).returncode == 0


def ensure_debootstrap() -> str:
    """The debootstrap executable, installed from Debian when missing."""
    found = shutil.which("debootstrap") or ("/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").exists() else None)
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise ImageUnavailableError("debootstrap is not installed and there is no apt-get to install it")
    print("lambda-image: installing Debian's debootstrap", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "debootstrap"]):
        run(command, env=env)
    return shutil.which("debootstrap") or "/usr/sbin/debootstrap"


def run(command: Sequence[str], *, env: dict[str, str] | None = None, log: Path | None = None) -> None:
    """Run a build step; on failure raise with the step and the end of its output."""
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    if log is not None:
        log.write_text(done.stdout + done.stderr, encoding="utf-8")
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"`{' '.join(command[:4])} ...` failed ({done.returncode}):\n{tail}")


def build_rootfs(inputs: Inputs, rootfs: Path) -> None:
    """Debian minbase + the interpreter + awslambdaric + bootstrap, under ``rootfs``."""
    debootstrap = ensure_debootstrap()
    print(
        f"lambda-image: debootstrap {inputs.suite} from {inputs.mirror} (+{len(inputs.packages)} packages)", flush=True
    )
    run(
        [
            debootstrap,
            "--variant=minbase",
            f"--include={','.join(inputs.packages)}",
            inputs.suite,
            str(rootfs),
            inputs.mirror,
        ],
        log=rootfs.parent / "debootstrap.log",
    )
    for relative in SLIMMED:
        for child in (rootfs / relative).glob("*"):
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    lang = rootfs / "var" / "lang"
    for source in inputs.python_files:
        target = lang / source.relative_to(inputs.python)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    (lang / "lib" / f"python{PY_VERSION}" / "site-packages").mkdir()
    for alias in ("python3", "python"):
        (lang / "bin" / alias).symlink_to(f"python{PY_VERSION}")
    (rootfs / "etc" / "ld.so.conf.d" / "var-lang.conf").write_text("/var/lang/lib\n", encoding="ascii")
    run(["chroot", str(rootfs), "/sbin/ldconfig"])
    runtime = rootfs / "var" / "runtime"
    print("lambda-image: awslambdaric (pinned) into /var/runtime", flush=True)
    run(
        [
            str(inputs.python / "bin" / f"python{PY_VERSION}"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--require-hashes",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--target",
            str(runtime),
            "-r",
            str(RECIPE_DIR / "requirements.txt"),
        ]
    )
    shutil.copy2(RECIPE_DIR / "bootstrap", runtime / "bootstrap")
    (runtime / "bootstrap").chmod(0o755)
    for directory in ("var/task", "opt"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    versions = subprocess.run(
        ["chroot", str(rootfs), "dpkg-query", "-W", "-f", "${Package} ${Version}\n"],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    manifest = {**inputs.describe(), "digest": inputs.digest, "debian_versions": versions}
    (rootfs / "etc" / "aisp-lambda-image.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def import_rootfs(rootfs: Path, tag: str) -> None:
    """``tar`` the root filesystem (sorted, numeric owners) into ``docker import`` as ``tag``."""
    changes = [f"ENV {name}={value}" for name, value in IMAGE_ENV.items()] + ["WORKDIR /var/task"]
    executable = shutil.which("docker")
    assert executable is not None  # noqa: S101 - checked by image_exists() before
    importer = [executable, "import", *[arg for change in changes for arg in ("--change", change)], "-", tag]
    with subprocess.Popen(  # noqa: S603
        ["tar", "--create", "--file=-", f"--directory={rootfs}", "--sort=name", "--numeric-owner", "."],  # noqa: S607
        stdout=subprocess.PIPE,
    ) as tar:
        done = subprocess.run(importer, stdin=tar.stdout, capture_output=True, text=True, check=False)  # noqa: S603
    if tar.returncode != 0 or done.returncode != 0:
        raise RuntimeError(f"docker import failed: {done.stderr.strip() or f'tar exited {tar.returncode}'}")


def remove_superseded(keep: str) -> None:
    """Remove this repository's images built from other inputs (never another repository's)."""
    listing = docker("image", "ls", REPOSITORY, "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    for name in listing:
        if name not in {keep, ALIAS} and re.fullmatch(rf"{REPOSITORY}:{PY_VERSION}-[0-9a-f]{{12}}", name):
            docker("image", "rm", name)


def build(python: Path) -> str:
    """Build the image unless one with the same inputs exists; its tag.

    Raises
    ------
    ImageUnavailableError
        No engine runs, or the build needs root and does not have it.
    RuntimeError
        A build step failed (debootstrap, pip, docker import), with its output.
    """
    if reason := docker_engine.problem():
        raise ImageUnavailableError(reason)
    inputs = collect_inputs(python)
    if image_exists(inputs.tag):
        docker("tag", inputs.tag, ALIAS)
        print(f"lambda-image: {inputs.tag} is up to date (same inputs)")
        return inputs.tag
    if os.geteuid() != 0:
        raise ImageUnavailableError("building the image needs root (debootstrap, chroot)")
    with tempfile.TemporaryDirectory(prefix="lambda-image-", dir="/var/tmp") as work:  # noqa: S108 - large, not tmpfs
        rootfs = Path(work) / "rootfs"
        build_rootfs(inputs, rootfs)
        print(f"lambda-image: docker import {inputs.tag}", flush=True)
        import_rootfs(rootfs, inputs.tag)
    docker("tag", inputs.tag, ALIAS)
    remove_superseded(inputs.tag)
    print(f"lambda-image: built {inputs.tag} (also tagged {ALIAS})")
    return inputs.tag


def main(argv: Sequence[str] | None = None) -> int:
    """Build (or find) the image; exit 0 with the reason when it cannot be built here, 1 when a step fails."""
    parser = argparse.ArgumentParser(prog="python -m scripts.lambda_image", description=__doc__.splitlines()[0])
    parser.add_argument("--python", type=Path, default=DEFAULT_PYTHON, help=f"Python {PY_VERSION} prefix")
    parser.add_argument("--print-tag", action="store_true", help="print the tag the inputs give, build nothing")
    args = parser.parse_args(argv)
    if args.print_tag:
        print(collect_inputs(args.python).tag)
        return 0
    try:
        build(args.python)
    except ImageUnavailableError as error:
        UNAVAILABLE_FILE.parent.mkdir(parents=True, exist_ok=True)
        UNAVAILABLE_FILE.write_text(f"{error}\n", encoding="utf-8")
        print(f"lambda-image: not built, the container tests will be skipped: {error}", file=sys.stderr)
        return 0
    except RuntimeError as error:
        print(f"lambda-image: build failed: {error}", file=sys.stderr)
        return 1
    UNAVAILABLE_FILE.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
