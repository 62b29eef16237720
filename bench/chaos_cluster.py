"""The cluster of the chaos run (`bench/chaos.py --cluster`): a Ray head and one worker node
on loopback addresses of their own (bench/cluster_rig.py), which the gateway joins with
`cluster: {engine: ray, address, token_file}`, and the node's death.

The gateway joins a head that runs already instead of starting one beside itself, so that
SIGKILL of the gateway (twice per run) does not take the cluster with it. The head offers
CPUs too: every function spreads its two replicas over the head and the node, so the
node's loss takes one replica of each function and leaves one to fail over to, as a
cluster of two machines would.

The head and the node share the machine with bench/cluster.py's (the same addresses and
worker ports): the two benchmarks do not run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from cluster_rig import NODE_IP, Cluster, cluster, join_serving_node, with_descendants

HEAD_CPUS = 8  # Ray's accounting, not cores: room for a killed gateway's replicas and the new
REPLICA_CPU = 0.5  # each replica's share
RESTORE_TIMEOUT = 60.0  # seconds for the lost node's replicas to be replaced


@contextlib.contextmanager
def two_nodes(root: Path) -> Iterator[Cluster]:
    """The head and the worker node, each stopped by PID at the end."""
    with cluster(root, head_cpus=HEAD_CPUS) as found:
        found.node = join_serving_node(found)
        try:
            yield found
        finally:
            found.node.kill()  # a no-op once the fault killed it


def stack_block(found: Cluster) -> dict[str, Any]:
    return {"engine": "ray", "address": found.address, "token_file": str(found.token.path)}


def placement() -> dict[str, Any]:
    """What each function adds in cluster mode: a share of a node, spread over both."""
    return {"resources": {"cpu": REPLICA_CPU}, "placement": {"spread": True}}


def kill_node(found: Cluster) -> list[int]:
    """SIGKILL every process of the worker node at once (its raylet and agents, the Ray
    workers of its actors and the replicas' worker processes under them), as a crash of its
    machine would; the PIDs killed."""
    node = found.node
    assert node is not None
    victims = with_descendants({node.pid, *node.session.members()})
    for pid in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    node.kill()  # reaps the session's leader; nothing of the node is left to stop
    return victims


async def restored(admin: httpx.AsyncClient, functions: list[str], replicas: int) -> bool:
    """Wait until every function has `replicas` ready replicas again, none on the lost node;
    False after RESTORE_TIMEOUT."""
    deadline = time.monotonic() + RESTORE_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            if all([await _serving(admin, name, replicas) for name in functions]):
                return True
        await asyncio.sleep(0.1)
    return False


async def replicas_on_node(admin: httpx.AsyncClient, functions: list[str]) -> int:
    """How many ready replicas the worker node holds now (what its loss takes)."""
    count = 0
    for name in functions:
        found = await admin.get(f"/system/function/{name}", timeout=2)
        ready = [r for r in found.json()["replicaList"] if r["state"] == "ready"]
        count += sum(r.get("node") == NODE_IP for r in ready)
    return count


async def _serving(admin: httpx.AsyncClient, name: str, replicas: int) -> bool:
    found = await admin.get(f"/system/function/{name}", timeout=2)
    ready = [r for r in found.json()["replicaList"] if r["state"] == "ready"]
    return len(ready) >= replicas and all(r.get("node") != NODE_IP for r in ready)
