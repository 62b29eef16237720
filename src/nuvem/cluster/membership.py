"""The nodes of a Ray cluster as the head's GCS knows them: who is there, in what state,
with what to offer.

Read with a `GcsClient` (two calls of about a millisecond each: node table, then resource
usage), not with `ray.nodes()`, which needs a connected driver (1.5-2 s to connect) and
has no available resources, nor with `ray.util.state`, which needs the dashboard that
nuvem keeps off.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nuvem.cluster.gcs import HeadUnreachable, probe, ray_module
from nuvem.cluster.token import ClusterToken
from nuvem.errors import ClusterError

# Resources Ray adds by itself: one per node address, one for the head, the object store.
_BOOKKEEPING_PREFIX = "node:"
_OBJECT_STORE = "object_store_memory"
_RAY_LABEL_PREFIX = "ray.io/"
_GCS_TIMEOUT = 5  # seconds, for one GCS call

K = TypeVar("K", bound=Hashable)


class NodeState(enum.Enum):
    ALIVE = "alive"  # registered and passing health checks; Ray may place work on it
    DRAINING = "draining"  # leaving: Ray places nothing new on it, its work moves elsewhere
    DEAD = "dead"  # gone: left, drained, or missed its health checks; its work is lost


@dataclass(frozen=True, slots=True)
class Resources:
    """An amount of each resource Ray schedules with."""

    cpu: float = 0.0
    gpu: float = 0.0
    memory: int = 0  # bytes
    custom: Mapping[str, float] = field(default_factory=dict)  # e.g. {"accelerator": 4}

    @classmethod
    def from_ray(cls, amounts: Mapping[str, float]) -> Resources:
        custom = {
            name: value
            for name, value in amounts.items()
            if name not in ("CPU", "GPU", "memory", _OBJECT_STORE)
            and not name.startswith(_BOOKKEEPING_PREFIX)
        }
        return cls(
            cpu=float(amounts.get("CPU", 0.0)),
            gpu=float(amounts.get("GPU", 0.0)),
            memory=int(amounts.get("memory", 0)),
            custom=dict(sorted(custom.items())),
        )

    def as_dict(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "gpu": self.gpu, "memory": self.memory, **self.custom}


@dataclass(frozen=True, slots=True)
class Node:
    """One node of the cluster (the head is one too)."""

    id: str  # Ray's node id, hex
    address: str  # the IP address the node is reached at
    port: int  # its raylet's port: with the address, unique among live nodes
    name: str
    head: bool
    state: NodeState
    labels: Mapping[str, str]  # the labels it was started with (Ray's own left out)
    total: Resources
    available: Resources  # what is not held by actors or tasks now (zero when not alive)
    started_at: float  # seconds since the epoch
    ended_at: float | None  # when it was seen dead
    death: str  # why it is dead, in Ray's words; empty while alive
    drained: bool = False  # dead because it was drained (asked to go), not lost

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "address": self.address,
            "port": self.port,
            "name": self.name,
            "head": self.head,
            "state": self.state.value,
            "labels": dict(self.labels),
            "resources": {"total": self.total.as_dict(), "available": self.available.as_dict()},
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "death": self.death,
        }


class Membership:
    """The head's view of the cluster, asked afresh on every call."""

    def __init__(self, address: str, token: ClusterToken) -> None:
        self.address = address
        self.token = token
        self._gcs = probe(address, token)
        self._pb = ray_module("ray.core.generated.gcs_pb2")
        self._ray_error: type[Exception] = ray_module("ray.exceptions").RayError
        death = ray_module("ray.core.generated.common_pb2").NodeDeathInfo
        self._drain_reasons = frozenset(
            {death.AUTOSCALER_DRAIN_PREEMPTED, death.AUTOSCALER_DRAIN_IDLE}
        )

    def nodes(self) -> list[Node]:
        """Every node the head knows, the dead ones it still remembers included."""
        try:
            infos = self._gcs.get_all_node_info(timeout=_GCS_TIMEOUT)
            usage = self._gcs.get_all_resource_usage(timeout=_GCS_TIMEOUT)
        except self._ray_error as exc:
            raise HeadUnreachable(
                f"the Ray head at {self.address} did not answer: {exc}",
                hint="check that the head runs (`nuvem up`) and that this machine reaches it",
            ) from None
        available = {
            bytes(batch.node_id): dict(batch.resources_available)
            for batch in usage.resource_usage_data.batch
        }
        nodes = [self._node(info, available) for info in infos.values()]
        return sorted(nodes, key=lambda n: (not n.head, n.address, n.port, n.started_at))

    def node_at(self, address: str, port: int) -> Node | None:
        """The newest node reached at `address:port` (its raylet's port), if any."""
        found = [n for n in self.nodes() if n.address == address and n.port == port]
        return max(found, key=lambda n: n.started_at) if found else None

    def drain(self, node: Node, message: str, deadline: float) -> None:
        """Mark `node` as draining: Ray places nothing new on it, and its raylet exits by
        itself once nothing runs there. `deadline` (epoch seconds) is when its owner
        stops it anyway."""
        autoscaler = ray_module("ray.core.generated.autoscaler_pb2")
        reason = autoscaler.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION")
        # PREEMPTION: a drain the raylet may not reject (an IDLE_TERMINATION one it would,
        # while work runs there); the node is going either way.
        try:
            accepted, why = self._gcs.drain_node(node.id, reason, message, int(deadline * 1000))
        except self._ray_error as exc:
            raise HeadUnreachable(f"the Ray head at {self.address} did not answer: {exc}") from None
        if not accepted:
            raise ClusterError(f"the head did not accept draining node {node.id}: {why}")

    def _node(self, info: Any, available: Mapping[bytes, Mapping[str, float]]) -> Node:
        dead = info.state == self._pb.GcsNodeInfo.DEAD
        draining = info.state_snapshot.state == self._pb.NodeSnapshot.DRAINING
        state = NodeState.DEAD if dead else NodeState.DRAINING if draining else NodeState.ALIVE
        return Node(
            id=info.node_id.hex(),
            address=info.node_manager_address,
            port=info.node_manager_port,
            name=info.node_name,
            head=info.is_head_node,
            state=state,
            labels={
                key: value
                for key, value in sorted(info.labels.items())
                if not key.startswith(_RAY_LABEL_PREFIX)
            },
            total=Resources.from_ray(info.resources_total),
            available=Resources() if dead else Resources.from_ray(available.get(info.node_id, {})),
            started_at=info.start_time_ms / 1000,
            ended_at=info.end_time_ms / 1000 if dead and info.end_time_ms else None,
            death=info.death_info.reason_message if dead else "",
            drained=dead and info.death_info.reason in self._drain_reasons,
        )


def newest_by(nodes: Iterable[Node], key: Callable[[Node], K | None]) -> dict[K, Node]:
    """The latest started node for each key (nodes whose key is None left out): a node
    that joined again leaves its earlier, dead self in the head's memory."""
    newest: dict[K, Node] = {}
    for node in nodes:
        found = key(node)
        if found is None:
            continue
        seen = newest.get(found)
        if seen is None or node.started_at > seen.started_at:
            newest[found] = node
    return newest


def wait_for_node(
    membership: Membership,
    address: str,
    port: int,
    states: frozenset[NodeState],
    within: float,
    still_starting: Callable[[], bool] | None = None,
) -> Node | None:
    """Poll until the node at `address:port` is in one of `states`; None at the deadline,
    or as soon as `still_starting()` (when given) returns False."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        node = membership.node_at(address, port)
        if node is not None and node.state in states:
            return node
        if still_starting is not None and not still_starting():
            return None
        time.sleep(0.05)  # another process's registration: nothing to await on here
    return None
