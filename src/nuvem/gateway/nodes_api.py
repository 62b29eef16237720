"""`GET /system/nodes`: the machines replicas run on, their resources and their replicas."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from nuvem.cluster.membership import Node, NodeState, newest_by
from nuvem.gateway.services import Services
from nuvem.gateway.system_api import Admin
from nuvem.stack.container import CONTAINERS_LABEL
from nuvem.stack.pools import NODE_LABEL

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
    containers: str = Field(
        default="",
        description="the engine it runs image functions with (podman, docker); empty: none",
    )
    total: dict[str, Any] = Field(description="cpu, gpu, memory (bytes) and custom resources")
    used: dict[str, Any] = Field(description="what actors and tasks hold now")
    replicas: list[NodeReplica]
    death: str = Field(default="", description="why it is dead, in the engine's words")
    pool: str = Field(default="", description="the pool it belongs to; empty: joined by hand")
    lifecycle: str = Field(
        default="",
        description="a pool machine's lifecycle: requested | provisioning | joined | draining "
        "| removed | failed",
    )


class PoolMachine(BaseModel):
    name: str
    pool: str
    state: str = Field(
        description="requested | provisioning | joined | draining | removed | failed"
    )
    reason: str = Field(description="why it is in this state, in words")
    requested_at: float
    changed_at: float
    joined_at: float | None
    address: str
    node_id: str
    removing: bool = Field(description="decided to go: left out of the next provider run")


class PoolStatus(BaseModel):
    name: str
    module: str
    min: int
    max: int
    warm: int
    running: bool = Field(description="a provider run (terraform apply) is under way")
    failures: int = Field(description="provider runs failed in a row")
    last_error: str = Field(description="the last failed run's diagnostic")
    machines: list[PoolMachine]


class PoolsStatus(BaseModel):
    pools: list[PoolStatus]


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
        containers=node.labels.get(CONTAINERS_LABEL, ""),
        total=total.as_dict(),
        used=used,
        replicas=replicas,
        death=node.death,
    )


@router.get("/nodes", response_model=list[NodeStatus])
async def list_nodes(platform: Admin) -> list[NodeStatus]:
    """Every node (the newest per address), with the replicas each runs."""
    nodes = await asyncio.to_thread(platform.engine.nodes)
    newest = newest_by(nodes, lambda n: n.address)
    by_node: dict[str, list[NodeReplica]] = {}
    for deployment in platform.controller.deployments.values():
        for replica in deployment.replicas:
            entry = NodeReplica(id=replica.id, function=replica.function, state=replica.state.value)
            by_node.setdefault(replica.node, []).append(entry)
    machines = _machines(platform)
    listed = []
    for node in sorted(nodes, key=lambda n: (not n.head, n.address, n.started_at)):
        if newest[node.address] is not node:
            continue
        status = _status(node, by_node.get(node.address, []))
        machine = machines.get(node.labels.get(NODE_LABEL, ""))
        if machine is not None:
            status.pool, status.lifecycle = machine.pool, machine.state
        listed.append(status)
    return listed


def _machines(platform: Services) -> dict[str, PoolMachine]:
    tier = platform.controller.node_tier
    if tier is None:
        return {}
    status = PoolsStatus.model_validate(tier.status())
    return {m.name: m for pool in status.pools for m in pool.machines}


@router.get("/pools", response_model=PoolsStatus)
async def list_pools(platform: Admin) -> PoolsStatus:
    """Every pool of the stack with its machines and their lifecycle (requested,
    provisioning, joined, draining, removed, failed), the removed ones included."""
    tier = platform.controller.node_tier
    if tier is None:
        return PoolsStatus(pools=[])
    return PoolsStatus.model_validate(tier.status())
