"""TerraformProvider with the built-in `local` module: real terraform, real Ansible, real
Ray nodes joining the session's head (tests/ray_cluster.py).

Each node is a `nuvem node join --detach` at its own loopback address, started by the
node playbook from Terraform's local-exec. Whatever a test leaves running is ended by
PID (from the nodes' records) when it ends, failed or not.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from nuvem.cluster import record
from nuvem.cluster.membership import Node, NodeState
from nuvem.cluster.process_session import process_alive, session_members
from nuvem.cluster.token import read_token
from nuvem.providers.provider import JoinInfo, NodeRequest
from nuvem.providers.terraform import TerraformProvider
from nuvem.stack.pools import NODE_LABEL, POOL_LABEL, NodeShape, PoolSpec
from ray_cluster import SMALL_STORE, RayCluster, worker_range
from servers import need_ansible, need_terraform

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def requests(pool: PoolSpec, *indexes: int) -> dict[str, NodeRequest]:
    found = {}
    for index in indexes:
        name = f"{pool.name}-{index}"
        shape = pool.node
        found[name] = NodeRequest(
            index, shape.cpus, shape.memory, shape.gpus, pool.node_labels(name)
        )
    return found


def pool_nodes(cluster: RayCluster, pool: str) -> dict[str, Node]:
    """The pool's live Ray nodes, by the node name they joined with."""
    return {
        node.labels[NODE_LABEL]: node
        for node in cluster.membership().nodes()
        if node.labels.get(POOL_LABEL) == pool and node.state is NodeState.ALIVE
    }


def session_folder(state_dir: Path) -> Path:
    """A node's Ray session folder, as the local module names it."""
    return Path("/tmp") / f"nuvem-{hashlib.sha1(str(state_dir).encode()).hexdigest()[:12]}"


@contextlib.contextmanager
def ending_every_node(machines: Path) -> Iterator[list[record.NodeRecord]]:
    """Yield a list the test adds node records to; SIGKILL what is left of them at the end."""
    seen: list[record.NodeRecord] = []
    try:
        yield seen
    finally:
        for folder in machines.glob("*"):
            found = record.read_node(folder)
            if found is not None:
                seen.append(found)
        for found in seen:
            for pid in (found.pid, found.ray_pid, *session_members(found.ray_pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def test_local_nodes_join_leave_one_by_one_and_are_destroyed(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    need_terraform()
    need_ansible()
    provider = TerraformProvider(tmp_path / "state")
    first, _ = worker_range()
    pool = PoolSpec(
        name="tf",
        module="local",
        max=3,
        node=NodeShape(cpus=1, memory=2**30, labels={"zone": "tf"}),
        variables={
            "address_range": "127.0.100.0/24",
            "worker_ports_from": first - 100,  # nodes 1 and 2 share one range of 200
            "worker_ports_per_node": 100,
            "object_store_memory": SMALL_STORE,
        },
    )
    join = JoinInfo(
        ray_cluster.address,
        read_token(ray_cluster.token_file).value,
        token_file=str(ray_cluster.token_file),
    )
    lines: list[str] = []
    with ending_every_node(provider.machines_dir(pool)) as records:
        result = await provider.apply(
            pool, requests(pool, 1, 2), join, lambda p: lines.append(p.message)
        )
        assert {name: m.address for name, m in result.machines.items()} == {
            "tf-1": "127.0.100.2",
            "tf-2": "127.0.100.3",
        }
        assert await provider.machines(pool) == result.machines
        assert any("Creation complete" in line for line in lines), lines
        joined = pool_nodes(ray_cluster, "tf")
        assert {name: node.address for name, node in joined.items()} == {
            "tf-1": "127.0.100.2",
            "tf-2": "127.0.100.3",
        }
        assert joined["tf-1"].labels["zone"] == "tf"
        assert joined["tf-1"].total.cpu == 1
        for name in ("tf-1", "tf-2"):
            found = record.read_node(provider.machines_dir(pool) / name)
            assert found is not None
            records.append(found)
        assert await provider.plan(pool, requests(pool, 1, 2), join) == []

        result = await provider.apply(pool, requests(pool, 1), join)
        assert set(result.machines) == {"tf-1"}
        left = pool_nodes(ray_cluster, "tf")
        assert set(left) == {"tf-1"}
        assert left["tf-1"].id == joined["tf-1"].id  # untouched
        assert not process_alive(records[1].pid)

        await provider.destroy(pool)
        assert await provider.machines(pool) == {}
        assert pool_nodes(ray_cluster, "tf") == {}
        for found in records:
            assert not process_alive(found.pid)
            assert session_members(found.ray_pid) == []
        for name in ("tf-1", "tf-2"):
            assert not session_folder(provider.machines_dir(pool) / name).exists()
