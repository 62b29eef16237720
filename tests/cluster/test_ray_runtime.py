"""Replicas on a real Ray cluster, through a real gateway (`nuvem up` with `engine: ray`).

The session's cluster (tests/ray_cluster.py) has a head at 127.0.W.2 (1 CPU) and nodes at
127.0.W.3 (NODE_A: 1 CPU, 2 GPUs declared, zone=a, runs containers with podman) and
127.0.W.4 (NODE_B: 1 CPU, zone=b), W being the pytest-xdist worker's number. Tests that
lose or add a node join one of their own. The gateway runs in its own process: it is the
cluster's Ray driver, and the test process stays none.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import tempfile
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway_calls import deploy, nodes_of, remove, status, until_ready
from listening import listening, unauthenticated_control
from nuvem.cluster.node import RayNode
from nuvem.cluster.options import JoinOptions, Offer
from nuvem.cluster.relay_preamble import signer
from podman_images import echo_image, podman
from ray_cluster import HEAD_IP, NODE_IPS, RayCluster, next_ip, worker_range
from registry_server import registry_server
from support import Nuvem, block_until, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HANDLERS = """
import os, sys, time

def where(req):
    return {
        "file": __file__,
        "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "ray": sorted(k for k in os.environ if k.startswith("RAY_")),
        "prefix": sys.prefix,
    }

def where_slowly(req):
    time.sleep(0.5)
    return {"replica": os.environ["NUVEM_REPLICA"], **where(req)}

def slow(req):
    time.sleep(float(req.body or b"0.05"))
    return b"done"

def six_version(req):
    import six
    return six.__version__
"""

NODE_A, NODE_B = NODE_IPS  # zone a (runs containers), zone b


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("code")
    (folder / "app.py").write_text(HANDLERS)
    return folder


@pytest.fixture(scope="module")
def gateway(
    ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory, code: Path
) -> Iterator[Nuvem]:
    root = tmp_path_factory.mktemp("ray-gateway")
    stack = root / "nuvem.yaml"
    stack.write_text(
        textwrap.dedent(
            f"""
            cluster:
              engine: ray
              address: {ray_cluster.address}
              token_file: {ray_cluster.token_file}
            """
        )
    )
    process = Nuvem(root, {"NUVEM_TICK_INTERVAL": "0.2"})
    process.start("-f", str(stack), "--log-level", "warning")
    try:
        yield process
    finally:
        process.stop()


async def test_labels_place_replicas_and_code_comes_from_the_bundle(
    admin: httpx.AsyncClient, code: Path
) -> None:
    await deploy(
        admin,
        {
            "name": "zoned",
            "handler": "app:where",
            "root": str(code),
            "resources": {"cpu": 0.25},
            "placement": {"labels": {"zone": "b"}},
            "scaling": {"min": 2, "max": 2},
        },
    )
    await until_ready(admin, "zoned", 2, within=60)
    assert nodes_of(await status(admin, "zoned")) == [NODE_B, NODE_B]
    answer = await admin.post("/function/zoned")
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    # The node runs the code it was sent (unpacked by digest), not the gateway's folder.
    assert "/code/" in seen["file"]
    assert not seen["file"].startswith(str(code))
    assert seen["ray"] == []  # Ray's settings, its token among them, never reach user code
    assert seen["gpus"] == ""
    nodes = (await admin.get("/system/nodes")).json()
    on_b = next(n for n in nodes if n["address"] == NODE_B)
    assert sorted(r["function"] for r in on_b["replicas"]) == ["zoned", "zoned"]
    assert on_b["labels"]["zone"] == "b"
    assert on_b["used"]["cpu"] == pytest.approx(0.5)
    await remove(admin, "zoned")


async def test_fractional_gpus_share_a_device_and_too_many_wait_with_the_reason(
    admin: httpx.AsyncClient, code: Path
) -> None:
    await deploy(
        admin,
        {
            "name": "halves",
            "handler": "app:where_slowly",
            "root": str(code),
            "resources": {"cpu": 0.1, "gpu": 0.5},
            "scaling": {"min": 3, "max": 3},
        },
    )
    await until_ready(admin, "halves", 3, within=60)
    assert nodes_of(await status(admin, "halves")) == [NODE_A] * 3
    # Three calls at once go to the three replicas (least outstanding first).
    answers = await asyncio.gather(*(admin.post("/function/halves") for _ in range(3)))
    seen = {a.json()["replica"]: a.json()["gpus"] for a in answers}
    assert len(seen) == 3
    per_device = Counter(seen.values())
    # Halves share a device, two to a device at most: two devices for three halves.
    assert set(per_device) <= {"0", "1"}
    assert sorted(per_device.values()) == [1, 2]
    await deploy(
        admin,
        {
            "name": "greedy",
            "handler": "app:where",
            "root": str(code),
            "resources": {"cpu": 0.1, "gpu": 4},
            "scaling": {"min": 1, "max": 1},
        },
    )

    async def pending() -> list[dict[str, str]]:
        found = (await status(admin, "greedy"))["pending"]
        assert isinstance(found, list)
        return found

    await wait_until(pending, within=10, what="greedy pending")
    waiting = await pending()
    assert waiting[0]["short"] == "gpu"
    assert "no node has 4 GPU (the largest has 2 GPU)" in waiting[0]["reason"]
    assert (await status(admin, "greedy"))["status"] == "pending"
    metrics = (await admin.get("/metrics")).text
    assert 'nuvem_replicas_pending{function_name="greedy",short="gpu"} 1.0' in metrics
    await remove(admin, "greedy")
    await remove(admin, "halves")


async def test_a_pending_replica_starts_when_a_node_with_room_joins(
    admin: httpx.AsyncClient, code: Path, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    await deploy(
        admin,
        {
            "name": "late",
            "handler": "app:where",
            "root": str(code),
            "resources": {"cpu": 0.5},
            "placement": {"labels": {"pool": "late"}},
            "scaling": {"min": 1, "max": 1},
        },
    )

    async def pending() -> list[dict[str, str]]:
        found = (await status(admin, "late"))["pending"]
        assert isinstance(found, list)
        return found

    waiting = await wait_until(pending, within=10, what="late pending")
    assert waiting[0]["short"] == "labels"
    node = await asyncio.to_thread(_join, ray_cluster, tmp_path, {"pool": "late"})
    try:
        await until_ready(admin, "late", 1, within=60)
        assert nodes_of(await status(admin, "late")) == [node.options.node_ip]
        assert (await admin.post("/function/late")).status_code == 200
    finally:
        await remove(admin, "late")
        node.kill()


async def test_a_lost_node_fails_no_idempotent_call(
    admin: httpx.AsyncClient, code: Path, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    # A second zone-b node beside NODE_B: spread over the two, a replica lands on each,
    # and after the loss the survivor has room for the replacement.
    node = await asyncio.to_thread(_join, ray_cluster, tmp_path, {"zone": "b", "doomed": "yes"})
    try:
        await _lose_a_node_under_load(admin, code, node)
    finally:
        node.kill()
        await remove(admin, "steady")
        await remove(admin, "fragile")


async def _lose_a_node_under_load(admin: httpx.AsyncClient, code: Path, node: RayNode) -> None:
    await deploy(
        admin,
        {
            "name": "steady",
            "handler": "app:slow",
            "root": str(code),
            "idempotent": True,
            "resources": {"cpu": 0.5},
            "placement": {"labels": {"zone": "b"}, "spread": True},
            "max_inflight": 8,
            "scaling": {"min": 2, "max": 2},
        },
    )
    await until_ready(admin, "steady", 2, within=60)
    doomed = node.options.node_ip
    assert nodes_of(await status(admin, "steady")) == sorted([NODE_B, doomed])
    codes: list[int] = []
    stop = asyncio.Event()

    async def caller() -> None:
        while not stop.is_set():
            answer = await admin.post("/function/steady", content=b"0.05")
            codes.append(answer.status_code)

    # A call that is not safe to retry, running on the node when it goes: a 502 naming it.
    await deploy(
        admin,
        {
            "name": "fragile",
            "handler": "app:slow",
            "root": str(code),
            "resources": {"cpu": 0.1},
            "placement": {"labels": {"doomed": "yes"}},
            "scaling": {"min": 1, "max": 1},
        },
    )
    await until_ready(admin, "fragile", 1, within=60)
    in_flight = asyncio.create_task(admin.post("/function/fragile", content=b"20"))
    callers = [asyncio.create_task(caller()) for _ in range(6)]
    await wait_until(lambda: len(codes) > 30, within=30, what="load running")
    loop = asyncio.get_running_loop()

    async def replaced() -> float | None:
        where = nodes_of(await status(admin, "steady"))
        return loop.time() if where == [NODE_B, NODE_B] else None

    killed_at = loop.time()
    node.kill()
    try:
        replaced_at = await wait_until(
            replaced, within=30, what="the lost node's replicas replaced"
        )
        await asyncio.sleep(1.0)  # keep the load on the replacements a moment
    finally:
        stop.set()
        await asyncio.gather(*callers)
    assert replaced_at is not None, "the lost node's replicas were not replaced"
    print(f"node lost under load: {len(codes)} calls, replaced in {replaced_at - killed_at:.2f}s")
    lost_call = await in_flight
    assert lost_call.status_code == 502, lost_call.text
    assert f"was lost with its node {doomed}" in lost_call.json()["error"]
    failed = [c for c in codes if c != 200]
    assert failed == [], f"{len(failed)} of {len(codes)} calls failed: {sorted(set(failed))}"
    events = (await admin.get("/system/events", params={"function": "steady"})).json()
    assert any(f"was lost with its node {doomed}" in e["message"] for e in events), events


def _join(cluster: RayCluster, logs: Path, labels: dict[str, str]) -> RayNode:
    # Ray's sockets live under its temp folder, whose path must stay short (107 bytes).
    root = Path(tempfile.mkdtemp(prefix="nuvem-node-", dir="/tmp"))
    options = JoinOptions(
        cluster.address,
        cluster.token_file,
        node_ip=next_ip(),
        offer=Offer(cpus=1, memory=2**30, object_store_memory=80 * 2**20, labels=labels),
        workers=worker_range(),
        temp_dir=root,
    )
    return RayNode.join(options, logs / "node.log")


async def test_a_function_venv_is_built_on_its_node(admin: httpx.AsyncClient, code: Path) -> None:
    await deploy(
        admin,
        {
            "name": "withsix",
            "handler": "app:six_version",
            "root": str(code),
            "requirements": ["six==1.16.0"],
            "resources": {"cpu": 0.1},
            "placement": {"labels": {"zone": "a"}},
            "scaling": {"min": 1, "max": 1},
        },
    )
    await until_ready(admin, "withsix", 1, within=180)
    answer = await admin.post("/function/withsix")
    assert (answer.status_code, answer.text) == (200, "1.16.0")
    await remove(admin, "withsix")


async def test_a_leaving_node_hands_its_replicas_over_before_it_goes(
    admin: httpx.AsyncClient, code: Path, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    node = await asyncio.to_thread(_join, ray_cluster, tmp_path, {"zone": "b"})
    leaving = node.options.node_ip
    try:
        await deploy(
            admin,
            {
                "name": "movers",
                "handler": "app:slow",
                "root": str(code),
                "resources": {"cpu": 0.5},
                "placement": {"labels": {"zone": "b"}, "spread": True},
                "scaling": {"min": 2, "max": 2},
            },
        )
        await until_ready(admin, "movers", 2, within=60)
        assert nodes_of(await status(admin, "movers")) == sorted([NODE_B, leaving])
        # What Ctrl-C on `nuvem node join` does: drain, wait until the node is empty, stop.
        left = asyncio.create_task(asyncio.to_thread(node.leave, timeout=30))
        codes: list[int] = []
        while not left.done():
            codes.append((await admin.post("/function/movers", content=b"0.01")).status_code)
        assert await left is True
        assert nodes_of(await status(admin, "movers")) == [NODE_B, NODE_B]
        assert set(codes) == {200}, codes  # nothing failed while the replica moved
        events = (await admin.get("/system/events", params={"function": "movers"})).json()
        assert not any("replacing it" in e["message"] for e in events), events  # no death
    finally:
        node.kill()
        await remove(admin, "movers")


async def test_an_image_function_runs_on_the_node_that_has_an_engine(
    admin: httpx.AsyncClient, code: Path
) -> None:
    image = echo_image()
    resources = {"cpu": 0.25, "memory": "128Mi"}
    await deploy(
        admin, {"name": "boxed", "image": image, "root": str(code), "resources": resources}
    )
    await until_ready(admin, "boxed", 1, within=60)
    # Placed on the one node that advertises an engine, published on that node's address.
    assert nodes_of(await status(admin, "boxed")) == [NODE_A]
    answer = await admin.post("/function/boxed/raw", content=b"over there")
    assert answer.status_code == 200, answer.text
    assert answer.content == b"over there"
    (listed,) = json.loads(
        podman("ps", "--filter", "label=nuvem.function=boxed", "--format", "json")
    )
    # Published on the node's loopback only; the node's address has the actor's relay.
    assert listed["Ports"][0]["host_ip"] == "127.0.0.1"
    await _only_signed_calls_pass(admin, listed["Ports"][0]["host_port"])
    nodes = {n["address"]: n for n in (await admin.get("/system/nodes")).json()}
    assert nodes[NODE_A]["containers"] == "podman"
    assert nodes[NODE_B]["containers"] == ""
    assert [r["function"] for r in nodes[NODE_A]["replicas"]] == ["boxed"]
    # Its output reaches the gateway's log; its exit is named as on one machine.
    logged = await wait_until(
        lambda: _logged(admin, "boxed", "POST /raw"), 15, what="the container's line"
    )
    assert logged
    crash = await admin.get("/function/boxed/exit?code=3")
    assert crash.status_code == 502
    assert "container exited with code 3" in crash.json()["error"]
    await remove(admin, "boxed")
    await wait_until(
        lambda: podman("ps", "-a", "--filter", "label=nuvem.function=boxed", "-q") == "",
        30,
        what="the container removed",
    )


async def _only_signed_calls_pass(admin: httpx.AsyncClient, container_port: int) -> None:
    """The relay of `boxed` on NODE_A: listed there, a 401 to anyone without the replica's
    preamble (a control request, a wrong one), nothing of theirs reaching the container;
    the container's own port is not on the node's address at all."""
    lines = (await admin.get("/system/logs", params={"name": "boxed", "tail": 200})).text
    found = re.search(rf"called through its relay at {re.escape(NODE_A)}:(\d+)", lines)
    assert found, lines
    port = int(found[1])
    assert (NODE_A, port) in listening().values()
    assert (NODE_A, container_port) not in listening().values()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((NODE_A, container_port), timeout=5).close()
    assert unauthenticated_control(NODE_A, port).split()[1] == b"401"
    wrong = signer(os.urandom(32), "boxed-1")()
    with socket.create_connection((NODE_A, port), timeout=10) as sock:
        sock.sendall(wrong + b"POST /sneaked HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        answer = b"".join(iter(lambda: sock.recv(4096), b""))
    assert answer.startswith(b"HTTP/1.1 401 "), answer
    assert b"not signed with this replica's secret" in answer
    # A signed call after them is logged by the container; theirs never were.
    assert (await admin.post("/function/boxed/after", content=b"")).status_code == 200
    await wait_until(
        lambda: _logged(admin, "boxed", "POST /after"), 15, what="the container's line"
    )
    assert not await _logged(admin, "boxed", "/sneaked")
    assert not await _logged(admin, "boxed", "/system/shutdown")
    assert await wait_until(
        lambda: _logged(admin, "boxed", "relay refused a connection from"),
        15,
        what="the relay's refusal in the replica's log",
    )


async def _logged(admin: httpx.AsyncClient, function: str, text: str) -> bool:
    answer = await admin.get("/system/logs", params={"name": function, "tail": 200})
    return text in answer.text


def test_a_built_image_reaches_its_node_through_the_registry(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    """The cluster's registry path end to end: the gateway builds a `build:` function's
    image and pushes it to the stack's registry; the node's actor, whose engine lacks it,
    pulls it from there and serves it. (Gateway and node share this machine's podman store,
    so the gateway's copy is removed before the replica starts.)"""
    base = echo_image()
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Containerfile").write_text(
        "ARG FROM\nFROM ${FROM}\nLABEL nuvem.test=cluster-registry\n"
    )
    with registry_server() as address:

        def stack(scaling: str) -> str:
            return textwrap.dedent(
                f"""
                cluster:
                  engine: ray
                  address: {ray_cluster.address}
                  token_file: {ray_cluster.token_file}
                registry: {{address: '{address}', tls_verify: false}}
                functions:
                  shipped:
                    build: {{context: ctx, args: {{FROM: '{base}'}}}}
                    resources: {{cpu: 0.25, memory: 128Mi}}
                    scaling: {scaling}
                """
            )

        (tmp_path / "nuvem.yaml").write_text(stack("{min: 0, mode: null}"))
        nuvem = Nuvem(tmp_path, {"NUVEM_TICK_INTERVAL": "0.2"})
        nuvem.start("-f", "nuvem.yaml", "--log-level", "warning")
        tag = ""
        try:
            # At zero replicas the deploy builds and pushes at once (Controller.prepare).
            block_until(nuvem.healthy, 60, "the gateway to answer")
            # The status names what the replicas run: the build, by the registry's name.
            tag = str(nuvem.function("shipped")["image"])
            assert tag.startswith(f"{address}/nuvem/shipped:"), tag
            repository, _, version = tag.removeprefix(f"{address}/").rpartition(":")

            def pushed() -> bool:
                answer = httpx.get(f"http://{address}/v2/{repository}/tags/list", timeout=5)
                return answer.status_code == 200 and version in (answer.json()["tags"] or [])

            block_until(pushed, 120, f"{tag} pushed to the registry")
            podman("rmi", "--force", tag)
            (tmp_path / "nuvem.yaml").write_text(stack("{min: 1, mode: null}"))
            nuvem.run("deploy", "-f", "nuvem.yaml")
            nuvem.wait_ready("shipped", within=120)
            with nuvem.admin() as admin:
                answer = admin.post("/function/shipped/raw", content=b"pulled on the node")
                assert answer.status_code == 200, answer.text
                assert answer.content == b"pulled on the node"
                # On a Ray node that runs containers (the first node or the head, whose
                # CPU is free here), not on the gateway's own runtime.
                (node,) = nodes_of(admin.get("/system/function/shipped").json())
                assert node in (HEAD_IP, NODE_A)
                logs = admin.get("/system/logs", params={"name": "shipped", "tail": 200}).text
            assert f"pulling {tag} from {address}" in logs, logs
        finally:
            nuvem.stop()
            if tag:
                podman("rmi", "--force", tag, check=False)
