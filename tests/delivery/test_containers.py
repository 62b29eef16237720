"""The Containerfiles, built and run for real with podman on a Debian base image made here
with debootstrap (no registry can be reached): the gateway image answers /healthz as its
non-root user, with its healthcheck passing and the version in its labels.

The base image is made once and cached as a tarball under the test data folder
(NUVEM_TEST_DATA, default ~/.cache/nuvem-test-data): debootstrap takes ~35 s, importing the
tarball ~4 s. podman runs with runc and lowered rlimits: crun and raising rlimits both fail
in this sandbox (shared/notes/platform-facts.md, "Containers").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servers import missing
from support import block_until, free_port

ROOT = Path(__file__).resolve().parents[2]
BASE = "localhost/nuvem-test-base:bookworm"
DATA = Path(os.environ.get("NUVEM_TEST_DATA", Path.home() / ".cache" / "nuvem-test-data"))
BASE_TAR = DATA / "debian-bookworm-python3.tar"
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"]
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]

pytestmark = pytest.mark.slow


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


@pytest.fixture(scope="module")
def base_image() -> str:
    if shutil.which("podman") is None or not Path("/usr/sbin/runc").exists():
        missing("podman with runc", "run `make system-deps` or apt-get install podman runc")
    if subprocess.run(["podman", "image", "exists", BASE], check=False).returncode != 0:
        if not BASE_TAR.exists():
            make_base_tar()
        podman("import", str(BASE_TAR), BASE)
    return BASE


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build context whose dist/ holds the nuvem wheel and the wheels it needs, so that
    the build installs offline (`--no-index`), as the release workflow's does online."""
    folder = tmp_path_factory.mktemp("context")
    subprocess.run(
        [*PIP_WHEEL, "-w", str(folder / "dist"), str(ROOT)],
        check=True,
        timeout=600,
    )
    return folder


def build(containerfile: str, context: Path, base: str, tag: str, version: str) -> None:
    podman(
        "build",
        "--format",
        "docker",  # OCI images drop HEALTHCHECK
        *LIMITS,
        "-f",
        str(ROOT / "containers" / containerfile),
        "--build-arg",
        f"BASE={base}",
        "--build-arg",
        f"VERSION={version}",
        "--build-arg",
        "PIP_OPTIONS=--no-index",
        "-t",
        tag,
        str(context),
    )


@pytest.fixture(scope="module")
def gateway_image(context: Path, base_image: str) -> Iterator[str]:
    tag = "localhost/nuvem-gateway:test"
    build("gateway.Containerfile", context, base_image, tag, "1.2.3")
    yield tag
    podman("rmi", "-f", tag, check=False)


def test_the_gateway_image_answers_healthz_as_a_non_root_user(gateway_image: str) -> None:
    info = json.loads(podman("image", "inspect", gateway_image))[0]
    config = info["Config"]
    assert config["User"] == "10001:10001"
    assert config["Labels"]["org.opencontainers.image.version"] == "1.2.3"
    assert "/healthz" in " ".join(info["Healthcheck"]["Test"])
    port = free_port()
    name = f"nuvem-gateway-test-{port}"
    podman(
        "run",
        "-d",
        "--name",
        name,
        *LIMITS,
        "-e",
        "NUVEM_ADMIN_PASSWORD=container-test",
        "-p",
        f"127.0.0.1:{port}:8080",
        gateway_image,
    )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        block_until(healthy, 60, "the gateway container to answer /healthz")
        # The image's own healthcheck passes too, and the control port wants the password.
        podman("healthcheck", "run", name)
        listed = httpx.get(f"http://127.0.0.1:{port}/system/functions", timeout=5)
        assert listed.status_code == 401
        authed = httpx.get(
            f"http://127.0.0.1:{port}/system/functions",
            auth=("admin", "container-test"),
            timeout=5,
        )
        assert authed.status_code == 200, authed.text
        assert podman("exec", name, "id", "-u").strip() == "10001"
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)
