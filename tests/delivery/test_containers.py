"""The Containerfiles, built and run for real with podman on a Debian base image made here
with debootstrap (no registry can be reached): the gateway image answers /healthz as its
non-root user, with its healthcheck passing and the version in its labels.

The base image and podman's settings come from the harness (tests/podman_images.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from podman_images import LIMITS, build_image, podman
from podman_images import base_image as make_base_image
from support import block_until, free_port

ROOT = Path(__file__).resolve().parents[2]
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_image() -> str:
    return make_base_image()


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
    args = {"BASE": base, "VERSION": version, "PIP_OPTIONS": "--no-index"}
    build_image(ROOT / "containers" / containerfile, context, tag, args)


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
