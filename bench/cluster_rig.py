"""The rig bench/cluster.py runs on: a Ray head and a node on loopback addresses of their
own, gateways of either runtime side by side, and a sweep that leaves nothing running.

The addresses and worker ports stay apart from the tests' (tests/ray_cluster.py: 127.0.0.2-4
and 10 up, workers from 20000), so the benchmark may run while the test suite does.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from echo import BODY, BenchError, Server, free_port
from rich.console import Console

from nuvem.cluster.head import RayHead
from nuvem.cluster.node import RayNode
from nuvem.cluster.options import HeadOptions, JoinOptions, Offer
from nuvem.cluster.ports import free_ports
from nuvem.cluster.token import ClusterToken, ensure_token

HOST = "127.0.0.1"
HEAD_IP = "127.0.0.62"
NODE_IP = "127.0.0.63"  # the worker node that serves the compared functions
LATE_IP = "127.0.0.64"  # the node that joins during the run, and is lost
STORE = 80 * 2**20  # a small object store per node, as in the tests (Ray's minimum is 75Mi)
# Worker ports of the head and the first node; the late node (`nuvem node join`, which takes
# no range) keeps Ray's default 10002-19999, so no two nodes share one.
HEAD_WORKERS = (30000, 30199)
NODE_WORKERS = (30200, 30399)
SERVE_LABEL = {"pool": "serve"}  # the first node's: where the compared replicas go
START_TIMEOUT = 240.0  # seconds for a gateway or a function to be ready
# Not NUVEM_ or RAY_: workers get their platform's environment without those.
RUN_MARK = "BENCH_RUN"

err = Console(stderr=True)

# -- the gateways ----------------------------------------------------------------------------


@dataclasses.dataclass
class Gateway:
    side: str  # "local" or "ray"
    base: str
    server: Server
    admin: httpx.Client  # the admin's password: /system
    caller: httpx.Client  # the API key, as wrk calls: /function
    api_key: str = ""

    @property
    def pid(self) -> int:
        return self.server.process.pid

    def deploy(self, spec: dict[str, Any]) -> None:
        answer = self.admin.post("/system/functions", json=spec)
        if answer.status_code != 202:
            raise BenchError(f"{self.side}: deploying {spec['name']}: {answer.text}")

    def status(self, function: str) -> dict[str, Any]:
        answer = self.admin.get(f"/system/function/{function}")
        if answer.status_code != 200:
            raise BenchError(f"{self.side}: status of {function}: {answer.text}")
        found: dict[str, Any] = answer.json()
        if found.get("status") == "error":
            raise BenchError(f"{self.side}: {function} cannot start: {found.get('error')}")
        return found

    def ready(self, function: str, replicas: int) -> bool:
        return int(self.status(function)["availableReplicas"]) >= replicas

    def wait_ready(self, function: str, replicas: int) -> None:
        self.server.wait_until(
            f"{replicas} ready replicas of {function}",
            lambda: self.ready(function, replicas),
            START_TIMEOUT,
        )

    def call(self, function: str, timeout: float = 10.0) -> int:
        answer = self.caller.post(
            f"/function/{function}",
            content=BODY,
            headers={"content-type": "application/json", "authorization": f"Bearer {self.api_key}"},
            timeout=timeout,
        )
        return answer.status_code


@contextlib.contextmanager
def gateway(workdir: Path, side: str, stack: str) -> Iterator[Gateway]:
    """`nuvem up` with `stack` (only its cluster block) and a fresh state folder."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    state = workdir / f"{side}-state"
    stack_file = workdir / f"{side}.yaml"
    stack_file.write_text(stack)
    password = secrets.token_urlsafe(18)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUVEM_", "RAY_"))}
    env |= {"NUVEM_ADMIN_PASSWORD": password, "NUVEM_URL": base}
    argv = [sys.executable, "-m", "nuvem.cli.main", "up", "-f", str(stack_file)]
    argv += ["--host", HOST, "--port", str(port), "--state-dir", str(state)]
    argv += ["--log-level", "warning"]
    server = Server(f"the {side} gateway", argv, env, workdir / f"{side}-gateway.log")
    admin = httpx.Client(base_url=base, auth=("admin", password), timeout=30.0)
    caller = httpx.Client(base_url=base, timeout=30.0)
    try:
        yield Gateway(side, base, server, admin, caller)
    finally:
        admin.close()
        caller.close()
        server.stop(timeout=60)


def open_gateway(gw: Gateway) -> None:
    """Wait for the gateway's health, then make the API key the calls use."""
    gw.server.wait_until("health", lambda: gw.admin.get("/healthz").status_code == 200, 120)
    created = gw.admin.post("/system/keys", json={"name": "bench"})
    if created.status_code != 201:
        raise BenchError(f"{gw.side}: creating an API key: {created.text}")
    gw.api_key = created.json()["key"]


# -- the cluster -----------------------------------------------------------------------------


@dataclasses.dataclass
class Cluster:
    root: Path
    token: ClusterToken
    head: RayHead
    node: RayNode | None = None

    @property
    def address(self) -> str:
        return self.head.address


@contextlib.contextmanager
def cluster(root: Path, head_cpus: int = 0) -> Iterator[Cluster]:
    """The head, stopped by PID at the end (its nodes are the caller's to end first). With
    no CPUs of its own (the default) no replica lands on it."""
    token = ensure_token(root / "cluster-state")
    options = HeadOptions(
        token.path,
        port=free_ports(1)[0],
        node_ip=HEAD_IP,
        offer=Offer(cpus=head_cpus, object_store_memory=STORE),
        temp_dir=root / "ray",  # short: Ray's socket paths must stay under 107 characters
        workers=HEAD_WORKERS,
    )
    head = RayHead.start(options, root / "head.log")
    try:
        yield Cluster(root, token, head)
    finally:
        head.stop()


def join_serving_node(found: Cluster) -> RayNode:
    """The node the compared replicas run on: every label they are placed by."""
    state = found.root / "node-state"
    options = JoinOptions(
        found.address,
        found.token.path,
        node_ip=NODE_IP,
        offer=Offer(cpus=4, object_store_memory=STORE, labels={**SERVE_LABEL, "spare": "yes"}),
        workers=NODE_WORKERS,
        temp_dir=found.root / "ray-node",
    )
    # The replica actors keep their code and environments in the node's own state folder.
    environ = {**os.environ, "NUVEM_STATE_DIR": str(state)}
    return RayNode.join(options, found.root / "node.log", environ)


def kill_if_joined(joining: concurrent.futures.Future[RayNode]) -> None:
    if joining.exception() is None:
        joining.result().kill()


def replica_nodes(status: dict[str, Any]) -> list[str]:
    return sorted(r["node"] for r in status["replicaList"] if r["state"] == "ready")


def with_descendants(pids: set[int]) -> list[int]:
    """`pids` and every process started under them, from /proc: a node's Ray processes and
    what those started in sessions of their own (the replicas' workers)."""
    members = set(pids)
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
                parents[int(entry.name)] = int(stat[1])
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in members and pid not in members:
                members.add(pid)
                grew = True
    return sorted(members)


# -- cleanup ---------------------------------------------------------------------------------


def mark_run(root: Path) -> None:
    """Mark every process this run starts from now on (they inherit the variable: gateways,
    workers, Ray's processes and the replicas' workers under them), for `leftovers`."""
    os.environ[RUN_MARK] = str(root)


def leftovers(root: Path) -> list[tuple[int, str]]:
    """Processes of the run: marked by `mark_run`, or naming its folder on their command line."""
    mark = f"{RUN_MARK}={root}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
            if mark in environ or str(root).encode() in cmdline:
                found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode()[:120]))
    return found


def sweep(root: Path) -> None:
    """Report and SIGKILL anything of the run still alive after the orderly stops."""
    deadline = time.monotonic() + 10
    while (left := leftovers(root)) and time.monotonic() < deadline:
        time.sleep(0.2)  # workers end a moment after their link closes
    for pid, line in left:
        err.print(f"[yellow]still running after cleanup, killed:[/] {pid} {line}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
