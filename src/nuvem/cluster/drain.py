"""Draining: what happens between "this node leaves" and its processes stopping.

A node that leaves is first marked draining in the head (Ray then places nothing new on
it, and `nuvem nodes` shows it as draining), then the drain hook runs, then its Ray
processes stop. The hook is the seam for the runtime: whoever runs replicas on the
cluster sees the node draining and moves them off; the hook waits for that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from nuvem.cluster.membership import Membership, Node, NodeState

_POLL = 0.1  # seconds between looks at the head while a node drains


@dataclass(frozen=True, slots=True)
class DrainRequest:
    node: Node  # the leaving node, as the head saw it when the drain began
    membership: Membership  # the head, to follow the node (or anything else) with
    deadline: float  # epoch seconds: its processes stop then, whether drained or not


DrainHook = Callable[[DrainRequest], None]


def wait_until_idle(request: DrainRequest) -> None:
    """The default hook: return once nothing runs on the node any more (a draining raylet
    with no work exits by itself, so the head then sees it dead) or at the deadline."""
    while time.time() < request.deadline:
        node = request.membership.node_at(request.node.address, request.node.port)
        if node is None or node.id != request.node.id or node.state is NodeState.DEAD:
            return
        time.sleep(_POLL)
