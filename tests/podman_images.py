"""Harness for the tests that run real containers: podman with the settings this machine
needs, and a Debian base image made here with debootstrap (no registry can be reached).

The base image is made once and cached as a tarball under the test data folder
(NUVEM_TEST_DATA, default ~/.cache/nuvem-test-data): debootstrap takes ~35 s, importing the
tarball ~4 s. podman runs with runc and lowered rlimits: crun and raising rlimits both fail
in this sandbox (shared/notes/platform-facts.md, "Containers"; docs/containers.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from nuvem.runtime.engine_choice import ping
from servers import missing

BASE = "localhost/nuvem-test-base:bookworm"
DATA = Path(os.environ.get("NUVEM_TEST_DATA", Path.home() / ".cache" / "nuvem-test-data"))
BASE_TAR = DATA / "debian-bookworm-python3.tar"
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
ECHO = Path(__file__).parent / "delivery" / "echo_image"
ECHO_TAG = "localhost/nuvem-test-echo"


def podman(*args: str, check: bool = True, timeout: float = 600) -> str:
    done = subprocess.run(
        ["podman", "--runtime", "/usr/sbin/runc", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {done.returncode}\n{done.stderr}")
    return done.stdout


def need_podman() -> None:
    if shutil.which("podman") is None or not Path("/usr/sbin/runc").exists():
        missing("podman with runc", "run `make system-deps` or apt-get install podman runc")


def make_base_tar() -> None:
    """A minimal Debian with python3 and venv, as a tarball of its root."""
    if shutil.which("debootstrap") is None:
        missing("debootstrap", "run `make system-deps` or apt-get install debootstrap")
    DATA.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="nuvem-rootfs-"))
    try:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv",
                "bookworm",
                str(rootfs),
                "http://deb.debian.org/debian",
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
        partial = BASE_TAR.with_suffix(".partial")
        with partial.open("wb") as out:
            subprocess.run(["tar", "-C", str(rootfs), "-c", "."], stdout=out, check=True)
        partial.rename(BASE_TAR)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


@contextlib.contextmanager
def _one_builder() -> Iterator[None]:
    """Builds of the shared test images one at a time across the test run's processes
    (pytest-xdist workers tag the same images)."""
    DATA.mkdir(parents=True, exist_ok=True)
    with (DATA / "podman-builds.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# A container test that makes the base image first (debootstrap, then `podman import`) may
# take minutes on a fresh machine: 2.5 min here once, past the suite's 120 s per test.
FIRST_BUILD_TIMEOUT = 900


def base_ready() -> bool:
    """Whether the base image is in podman's store, or no podman is here (the container
    tests skip, or fail under CI, on their own): either way no first build is ahead."""
    return shutil.which("podman") is None or _base_exists()


def _base_exists() -> bool:
    return subprocess.run(["podman", "image", "exists", BASE], check=False).returncode == 0


def base_image() -> str:
    """The Debian base image with python3, imported from the cached tarball (made first
    when missing); skips, or fails under CI, without podman."""
    need_podman()
    with _one_builder():
        return _base_image()


def _base_image() -> str:
    if not _base_exists():
        if not BASE_TAR.exists():
            make_base_tar()
        podman("import", str(BASE_TAR), BASE)
    return BASE


def build_image(
    containerfile: Path, context: Path, tag: str, args: dict[str, str], *, cache: bool = True
) -> None:
    """Build `tag`; `cache=False` when only build args differ from a cached build: buildah
    here reuses an `ENV X=${ARG}` layer whatever the argument's new value (measured)."""
    build_args = [arg for key, value in args.items() for arg in ("--build-arg", f"{key}={value}")]
    with _one_builder():
        _build(containerfile, context, tag, build_args, cache)


def _build(
    containerfile: Path, context: Path, tag: str, build_args: list[str], cache: bool
) -> None:
    podman(
        "build",
        *([] if cache else ["--no-cache"]),
        "--format",
        "docker",  # OCI images drop HEALTHCHECK
        *LIMITS,
        "-f",
        str(containerfile),
        *build_args,
        "-t",
        tag,
        str(context),
    )


def echo_image(version: str = "1", *, cache: bool = True) -> str:
    """The echo image (tests/delivery/echo_image) at tag `version`, built on the base."""
    base = base_image()
    tag = f"{ECHO_TAG}:{version}"
    build_image(ECHO / "Containerfile", ECHO, tag, {"BASE": base, "VERSION": version}, cache=cache)
    return tag


@contextlib.contextmanager
def docker_api(folder: Path) -> Iterator[str]:
    """podman serving the Docker Engine API on a Unix socket in `folder` (no Docker daemon
    runs here; podman's is the same API): yields its DOCKER_HOST, stopped by PID after.
    The service runs containers with runc, as every podman here must."""
    need_podman()
    sock = folder / "docker.sock"
    log = (folder / "podman-service.log").open("wb")
    process = subprocess.Popen(
        [
            "podman",
            "--runtime",
            "/usr/sbin/runc",
            "system",
            "service",
            "--time=0",
            f"unix://{sock}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    host = f"unix://{sock}"
    try:
        deadline = time.monotonic() + 30
        # The platform's own probe, not httpx: httpcore leaves the socket of a refused
        # Unix connect open (a ResourceWarning, an error under filterwarnings=error).
        while not ping(host):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"podman system service did not answer on {sock}: "
                    + (folder / "podman-service.log").read_text()[-2000:]
                )
            time.sleep(0.05)
        yield host
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def prepare() -> int:
    """`make test-images`: the base image made ahead, on its own (debootstrap, 35 s to
    several minutes on a fresh machine). Without podman it says why and leaves the tests to
    skip, or fails when CI is set, as they would."""
    if shutil.which("podman") is None or not Path("/usr/sbin/runc").exists():
        print("container tests' base image: podman with runc is missing (make system-deps)")
        return 1 if os.environ.get("CI") else 0
    if shutil.which("debootstrap") is None and not BASE_TAR.exists():
        print("container tests' base image: debootstrap is missing (make system-deps)")
        return 1 if os.environ.get("CI") else 0
    began = time.monotonic()
    made = not _base_exists()
    if made:
        print(f"making the container tests' base image {BASE} (cached in {DATA})", flush=True)
    base_image()
    if made:
        print(f"{BASE} ready in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(prepare())
