"""The cluster engine a platform runs on, as the gateway's node views see it.

`LocalEngine` is this one machine (the embedded default); `RayEngine` is a Ray cluster,
whose membership the head's GCS answers (about 1 ms a question, no driver needed).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Protocol

from nuvem.cluster import record
from nuvem.cluster.membership import Membership, Node, NodeState, Resources
from nuvem.cluster.options import ExistingHead, plan
from nuvem.cluster.token import read_token
from nuvem.providers.provider import JoinInfo
from nuvem.runtime.devices import gpu_count
from nuvem.stack.cluster import Cluster

LOCAL_NODE = "local"  # what local replicas report as their node


class Engine(Protocol):
    @property
    def name(self) -> str: ...  # "local" or "ray"

    def nodes(self) -> list[Node]:
        """Every node, dead ones included (their state says so)."""
        ...

    def leaving(self) -> frozenset[str]:
        """Addresses of the nodes that are draining: their replicas move elsewhere."""
        ...


class LocalEngine:
    """One machine: one node, always alive, with this machine's CPUs, memory and GPUs."""

    name = "local"

    def __init__(self) -> None:
        self._started = time.time()

    def nodes(self) -> list[Node]:
        total = Resources(
            cpu=float(os.cpu_count() or 1),
            gpu=float(gpu_count()),
            memory=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        )
        free = Resources(
            cpu=total.cpu,
            gpu=total.gpu,
            memory=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"),
        )
        return [
            Node(
                id=LOCAL_NODE,
                address=LOCAL_NODE,
                port=0,
                name=os.uname().nodename,
                head=True,
                state=NodeState.ALIVE,
                labels={},
                total=total,
                available=free,
                started_at=self._started,
                ended_at=None,
                death="",
            )
        ]

    def leaving(self) -> frozenset[str]:
        return frozenset()


class RayEngine:
    """A Ray cluster: the stack's `cluster.address`, or else the head `nuvem up` started
    and recorded in the state folder."""

    name = "ray"

    def __init__(self, state_dir: Path, cluster: Cluster) -> None:
        self.state_dir = state_dir
        self.cluster = cluster
        self._membership: Membership | None = None
        self._lock = threading.Lock()

    def membership(self) -> Membership:
        with self._lock:
            if self._membership is None:
                planned = plan(self.cluster, self.state_dir)
                if isinstance(planned, ExistingHead):
                    address, token_file = planned.address, planned.token_file
                else:
                    head = record.read_head(self.state_dir)
                    address, token_file = head.address, Path(head.token_file)
                self._membership = Membership(address, read_token(token_file))
            return self._membership

    def connect(self) -> None:
        """Make this process the cluster's Ray driver (blocking; seconds)."""
        from nuvem.cluster import driver

        membership = self.membership()
        driver.connect(membership.address, membership.token)

    def nodes(self) -> list[Node]:
        return self.membership().nodes()

    def leaving(self) -> frozenset[str]:
        return frozenset(n.address for n in self.nodes() if n.state is NodeState.DRAINING)

    def drain(self, node: Node, reason: str, deadline: float) -> None:
        """Mark `node` draining: nothing new is placed there (a pool machine going away)."""
        self.membership().drain(node, reason, deadline)

    def join_info(self) -> JoinInfo:
        """What a new machine needs to join this cluster: the head and the token."""
        membership = self.membership()
        token = membership.token
        return JoinInfo(membership.address, token.value, str(token.path))
