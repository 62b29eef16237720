"""The Containerfiles, built and run for real with podman on a Debian base image made here
with debootstrap (no registry can be reached): the gateway image answers /healthz as its
non-root user, with its healthcheck passing and the version in its labels; the node image
joins a Ray head started here, on the host's network, and its healthcheck sees its raylet.

The base image and podman's settings come from the harness (tests/podman_images.py).
"""

from __future__ import annotations

import dataclasses
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

from nuvem.cluster.head import running_head
from nuvem.cluster.membership import Membership, NodeState
from nuvem.cluster.options import HeadOptions, plan
from nuvem.cluster.ports import free_ports
from nuvem.cluster.token import read_token
from nuvem.stack.loader import load_stack_text
from podman_images import LIMITS, build_image, podman
from podman_images import base_image as make_base_image
from ray_cluster import RayCluster, need_ray, next_ip, worker_range
from support import block_until, free_port

ROOT = Path(__file__).resolve().parents[2]
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"]

# Building an image takes minutes on a busy machine: pip wheel, the build, the layers.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def base_image() -> str:
    return make_base_image()


def wheels(folder: Path, requirement: str) -> Path:
    """A build context whose dist/ holds the nuvem wheel and the wheels it needs, so that
    the build installs offline (`--no-index`), as the release workflow's does online."""
    subprocess.run([*PIP_WHEEL, "-w", str(folder / "dist"), requirement], check=True, timeout=600)
    return folder


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wheels(tmp_path_factory.mktemp("context"), str(ROOT))


@pytest.fixture(scope="module")
def node_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wheels(tmp_path_factory.mktemp("node-context"), f"{ROOT}[ray]")


def build(containerfile: str, context: Path, base: str, tag: str, version: str) -> None:
    args = {"BASE": base, "VERSION": version, "PIP_OPTIONS": "--no-index"}
    build_image(ROOT / "containers" / containerfile, context, tag, args)


def built(kind: str, context: Path, base: str) -> Iterator[str]:
    """The `kind` image (containers/<kind>.Containerfile) at version 1.2.3, while in use."""
    tag = f"localhost/nuvem-{kind}:test"
    build(f"{kind}.Containerfile", context, base, tag, "1.2.3")
    yield tag
    podman("rmi", "-f", tag, check=False)


@pytest.fixture(scope="module")
def gateway_image(context: Path, base_image: str) -> Iterator[str]:
    yield from built("gateway", context, base_image)


@pytest.fixture(scope="module")
def node_image(node_context: Path, base_image: str) -> Iterator[str]:
    yield from built("node", node_context, base_image)


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


def test_the_node_image_joins_a_cluster(
    node_image: str, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    """A head started here as `nuvem up` starts one; the node container, on the host's
    network with its own loopback address, joins it as its non-root user.

    The head takes the shared test cluster's token: this process's Ray clients present one
    token for the process's life (cluster/gcs.py), and the suite's other cluster tests have
    already set it."""
    need_ray()
    info = json.loads(podman("image", "inspect", node_image))[0]
    assert info["Config"]["User"] == "10001:10001"
    assert info["Config"]["Labels"]["org.opencontainers.image.version"] == "1.2.3"
    head_ip, node_ip = next_ip(), next_ip()
    stack = load_stack_text(
        f"cluster: {{engine: ray, node_ip: {head_ip}, port: {free_ports(1)[0]}, cpus: 1, "
        "object_store_memory: 80Mi}\n",
        "nuvem.yaml",
        tmp_path,
    )
    options = plan(stack.cluster, tmp_path / "state")
    assert isinstance(options, HeadOptions)
    # Ray's Unix sockets want a short folder (107 characters at most).
    ray_temp = Path(tempfile.mkdtemp(prefix="nuvem-ray-", dir="/tmp"))
    options = dataclasses.replace(
        options, temp_dir=ray_temp, workers=worker_range(), token_file=ray_cluster.token_file
    )
    token = tmp_path / "token"
    first, last = worker_range()
    name = f"nuvem-node-test-{os.getpid()}"
    try:
        with running_head(options, tmp_path / "state") as address:
            assert address is not None
            # The head wrote the token; the container's user reads its own copy, which no
            # one else may.
            shutil.copy(options.token_file, token)
            os.chown(token, 10001, 10001)
            token.chmod(0o600)
            podman(
                "run",
                "-d",
                "--name",
                name,
                *LIMITS,
                "--network",
                "host",
                "--shm-size",
                "256m",  # the object store lives in /dev/shm: 64 MB by default
                # The base's python3 is Debian's 3.11.2, the head's this venv's: Ray wants
                # the same patch release unless told that the minor one is enough.
                "-e",
                "RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL=minor",
                "-v",
                f"{token}:/run/secrets/nuvem-cluster-token:ro",
                node_image,
                address,
                "--token-file",
                "/run/secrets/nuvem-cluster-token",
                "--node-ip",
                node_ip,
                "--cpus",
                "1",
                "--object-store-memory",
                "80Mi",
                "--worker-ports",
                f"{first}-{last}",
                "--temp-dir",
                "/tmp/ray",
            )
            membership = Membership(address, read_token(options.token_file))

            def joined() -> bool:
                return any(
                    n.address == node_ip and n.state is NodeState.ALIVE for n in membership.nodes()
                )

            block_until(joined, 120, lambda: "the node container to join:\n" + logs(name))
            podman("healthcheck", "run", name)  # its raylet runs
            assert podman("exec", name, "id", "-u").strip() == "10001"
    finally:
        podman("rm", "-f", "-t", "5", name, check=False)
        shutil.rmtree(ray_temp, ignore_errors=True)


def logs(name: str) -> str:
    done = subprocess.run(
        ["podman", "logs", name], capture_output=True, text=True, timeout=30, check=False
    )
    return (done.stdout + done.stderr)[-3000:]
