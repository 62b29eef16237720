"""The values membership hands out, built from what Ray reports (pure, without Ray)."""

from __future__ import annotations

from nuvem.cli.nodes import _latest, _used
from nuvem.cluster.membership import Node, NodeState, Resources


def node(address: str, started: float, state: NodeState, cpu_free: float = 2.0) -> Node:
    total = Resources(cpu=2, gpu=1, memory=2**30)
    return Node(
        id=f"{address}-{started}",
        address=address,
        port=7000,
        name=address,
        head=False,
        state=state,
        labels={},
        total=total,
        available=Resources(cpu=cpu_free, gpu=1, memory=2**30),
        started_at=started,
        ended_at=None,
        death="",
    )


def test_resources_leave_out_rays_bookkeeping() -> None:
    reported = {
        "CPU": 4.0,
        "GPU": 2.0,
        "memory": 1e9,
        "object_store_memory": 8e7,
        "node:10.0.0.7": 1.0,
        "node:__internal_head__": 1.0,
        "accelerator": 4.0,
    }
    resources = Resources.from_ray(reported)
    assert resources == Resources(cpu=4, gpu=2, memory=10**9, custom={"accelerator": 4.0})
    assert resources.as_dict() == {"cpu": 4.0, "gpu": 2.0, "memory": 10**9, "accelerator": 4.0}
    assert Resources.from_ray({}) == Resources()


def test_a_rejoined_node_hides_its_dead_self() -> None:
    old = node("10.0.0.7", 1.0, NodeState.DEAD)
    new = node("10.0.0.7", 2.0, NodeState.ALIVE)
    gone = node("10.0.0.8", 1.0, NodeState.DEAD)
    assert _latest([old, new, gone]) == [new, gone]


def test_in_use_is_total_less_available() -> None:
    busy = node("10.0.0.7", 1.0, NodeState.ALIVE, cpu_free=0.5)
    assert _used(busy) == Resources(cpu=1.5, gpu=0, memory=0)
    assert _used(node("10.0.0.7", 1.0, NodeState.DEAD, cpu_free=0.5)) == Resources()
