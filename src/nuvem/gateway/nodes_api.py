"""`GET /system/nodes`: the machines replicas run on, their resources and their replicas."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from nuvem.cluster.membership import Node, NodeState
from nuvem.gateway.system_api import Admin

router = APIRouter(prefix="/system", tags=["system"])


class NodeReplica(BaseModel):
    id: str
    function: str
    state: str


class NodeStatus(BaseModel):
    id: str
    address: str
    name: str
    head: bool
    state: str = Field(description="alive | draining | dead")
    labels: dict[str, str]
    total: dict[str, Any] = Field(description="cpu, gpu, memory (bytes) and custom resources")
    used: dict[str, Any] = Field(description="what actors and tasks hold now")
    replicas: list[NodeReplica]
    death: str = Field(default="", description="why it is dead, in the engine's words")


def _status(node: Node, replicas: list[NodeReplica]) -> NodeStatus:
    total, free = node.total, node.available
    alive = node.state is not NodeState.DEAD
    used = {
        "cpu": max(0.0, total.cpu - free.cpu) if alive else 0.0,
        "gpu": max(0.0, total.gpu - free.gpu) if alive else 0.0,
        "memory": max(0, total.memory - free.memory) if alive else 0,
    }
    return NodeStatus(
        id=node.id,
        address=node.address,
        name=node.name,
        head=node.head,
        state=node.state.value,
        labels=dict(node.labels),
        total=total.as_dict(),
        used=used,
        replicas=replicas,
        death=node.death,
    )


@router.get("/nodes", response_model=list[NodeStatus])
async def list_nodes(platform: Admin) -> list[NodeStatus]:
    """Every node (the newest per address), with the replicas each runs."""
    nodes = await asyncio.to_thread(platform.engine.nodes)
    newest: dict[str, Node] = {}
    for node in nodes:
        seen = newest.get(node.address)
        if seen is None or node.started_at > seen.started_at:
            newest[node.address] = node
    by_node: dict[str, list[NodeReplica]] = {}
    for deployment in platform.controller.deployments.values():
        for replica in deployment.replicas:
            entry = NodeReplica(id=replica.id, function=replica.function, state=replica.state.value)
            by_node.setdefault(replica.node, []).append(entry)
    return [
        _status(node, by_node.get(node.address, []) if newest[node.address] is node else [])
        for node in sorted(nodes, key=lambda n: (not n.head, n.address, n.started_at))
        if newest[node.address] is node
    ]
