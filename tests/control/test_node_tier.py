"""The node tier stepped by hand: a fake provider, a fake cluster, a clock the test moves."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nuvem.cluster.membership import Node, NodeState, Resources
from nuvem.control.node_plan import Need, NodeLifecycle
from nuvem.control.node_tier import NodeTier
from nuvem.control.pool_book import PoolBook
from nuvem.providers.fake import FakeProvider
from nuvem.providers.provider import JoinInfo
from nuvem.stack.pools import NODE_LABEL, PoolSpec

GIB = 2**30
pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeCluster:
    """The cluster as the tier sees it: every machine the provider made joins once
    `boot()` is called, with the labels it was asked for."""

    provider: FakeProvider
    clock: Clock
    nodes_now: dict[str, Node] = field(default_factory=dict)
    drained: list[str] = field(default_factory=list)
    unreachable: bool = False

    def boot(self, pool: str = "cpu", used: dict[str, float] | None = None) -> None:
        for request in self.provider.applied[-1:]:
            for name, want in request.nodes.items():
                if name in self.nodes_now and self.nodes_now[name].state is NodeState.ALIVE:
                    continue
                machine = self.provider._machines[pool].get(name)
                if machine is None:
                    continue
                total = Resources(cpu=want.cpus, gpu=want.gpus, memory=want.memory)
                self.nodes_now[name] = Node(
                    id=f"id-{name}-{self.clock.now}",
                    address=machine.address,
                    port=1000,
                    name=name,
                    head=False,
                    state=NodeState.ALIVE,
                    labels=dict(want.labels),
                    total=total,
                    available=total,
                    started_at=self.clock.now,
                    ended_at=None,
                    death="",
                )

    def kill(self, name: str, why: str = "killed by hand") -> None:
        self.nodes_now[name] = _with_state(self.nodes_now[name], NodeState.DEAD, why)

    def nodes(self) -> list[Node]:
        if self.unreachable:
            from nuvem.cluster.gcs import HeadUnreachable

            raise HeadUnreachable("the head did not answer")
        return list(self.nodes_now.values())

    def drain(self, node: Node, reason: str, deadline: float) -> None:
        self.drained.append(node.name)
        self.nodes_now[node.name] = _with_state(node, NodeState.DRAINING)

    def join_info(self) -> JoinInfo:
        return JoinInfo("127.0.0.2:6379", "secret")


def _with_state(node: Node, state: NodeState, death: str = "") -> Node:
    return Node(
        id=node.id,
        address=node.address,
        port=node.port,
        name=node.name,
        head=node.head,
        state=state,
        labels=node.labels,
        total=node.total,
        available=node.available,
        started_at=node.started_at,
        ended_at=None,
        death=death,
    )


def pool(**overrides: Any) -> PoolSpec:
    values: dict[str, Any] = {
        "name": "cpu",
        "min": 0,
        "max": 3,
        "node": {"cpus": 2, "memory": "4Gi", "labels": {"pool": "cpu"}},
        "scale_down_after": 60,
        "join_timeout": 30,
        **overrides,
    }
    return PoolSpec.model_validate(values)


@dataclass
class Rig:
    tier: NodeTier
    provider: FakeProvider
    cluster: FakeCluster
    clock: Clock
    events: list[tuple[str, str, dict[str, Any]]]

    async def step(
        self, needs: list[Need] | None = None, replicas: dict[str, int] | None = None
    ) -> None:
        await self.tier.step(needs or [], replicas or {})
        await self.tier.settle()

    def state(self, name: str) -> NodeLifecycle:
        machine = self.tier.book.get(name)
        assert machine is not None
        return machine.state

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.events]


def rig(spec: PoolSpec | None = None, book: Path | None = None) -> Rig:
    clock = Clock()
    provider = FakeProvider()
    cluster = FakeCluster(provider, clock)
    events: list[tuple[str, str, dict[str, Any]]] = []
    spec = spec or pool()
    tier = NodeTier(
        {spec.name: spec},
        provider,
        cluster,
        PoolBook(book),
        lambda kind, message, data: events.append((kind, message, data)),
        clock=clock,
    )
    return Rig(tier, provider, cluster, clock, events)


def one(cpu: float = 1.0) -> Need:
    return Need("f-1", "f", cpu, 0.0, 0.0)


async def test_a_waiting_replica_brings_a_machine_that_joins_then_goes_when_empty() -> None:
    r = rig()
    await r.step([one()])
    assert r.provider.node_sets("cpu") == [{"cpu-1"}]
    assert r.state("cpu-1") is NodeLifecycle.PROVISIONING
    request = r.provider.applied[0].nodes["cpu-1"]
    assert request.index == 1
    assert request.cpus == 2
    assert request.memory == 4 * GIB
    assert request.labels == {"pool": "cpu", "nuvem.dev/pool": "cpu", NODE_LABEL: "cpu-1"}
    assert r.provider.applied[0].join == JoinInfo("127.0.0.2:6379", "secret")
    # The same replica still waits while the machine boots: nothing more is asked for.
    await r.step([one()])
    assert r.provider.node_sets("cpu") == [{"cpu-1"}]
    r.clock.now += 3
    r.cluster.boot()
    await r.step([one()])
    assert r.state("cpu-1") is NodeLifecycle.JOINED
    assert "joined at 10.200.0.2 3.0s after it was requested" in r.events[-1][1]
    # The replica runs there now; the machine is busy and stays, however long.
    address = r.cluster.nodes_now["cpu-1"].address
    for _ in range(3):
        r.clock.now += 100
        await r.step([], {address: 1})
    assert r.state("cpu-1") is NodeLifecycle.JOINED
    # Empty: drained after scale_down_after, then removed by the next run.
    await r.step([], {})
    r.clock.now += 61
    await r.step([], {})
    assert r.cluster.drained == ["cpu-1"]
    assert r.state("cpu-1") is NodeLifecycle.DRAINING
    await r.step([], {})
    assert r.state("cpu-1") is NodeLifecycle.REMOVED
    assert r.provider.node_sets("cpu")[-1] == set()
    assert r.kinds() == [
        "node_requested",
        "node_joined",
        "node_draining",
        "node_removing",
        "node_removed",
    ]
    assert all(data["pool"] == "cpu" and data["node"] == "cpu-1" for _, _, data in r.events)


async def test_a_warm_machine_is_kept_and_refilled() -> None:
    r = rig(pool(warm=1))
    await r.step()
    assert r.provider.node_sets("cpu") == [{"cpu-1"}]
    r.cluster.boot()
    await r.step()
    assert r.state("cpu-1") is NodeLifecycle.JOINED
    # Idle for long: a warm machine is never drained.
    r.clock.now += 10_000
    await r.step()
    assert r.state("cpu-1") is NodeLifecycle.JOINED
    # A replica takes it: another is made warm.
    await r.step([], {r.cluster.nodes_now["cpu-1"].address: 1})
    assert r.provider.node_sets("cpu")[-1] == {"cpu-1", "cpu-2"}


async def test_a_failed_apply_is_reported_retried_with_back_off_and_believes_nothing() -> None:
    r = rig()
    r.provider.fail_next(2, diagnostic="Error: no route to the Proxmox API")
    await r.step([one()])
    kind, message, data = r.events[-1]
    assert kind == "pool_apply_failed"
    assert "no route to the Proxmox API" in message
    assert "retrying in 2s" in message
    assert data["attempt"] == 1
    # Not made, so not believed in: back to requested.
    assert r.state("cpu-1") is NodeLifecycle.REQUESTED
    await r.step([one()])
    assert len(r.provider.applied) == 1  # within the back-off: no second run yet
    r.clock.now += 2.1
    await r.step([one()])
    assert len(r.provider.applied) == 2
    assert "retrying in 4s" in r.events[-1][1]
    r.clock.now += 4.1
    await r.step([one()])
    assert len(r.provider.applied) == 3
    assert r.state("cpu-1") is NodeLifecycle.PROVISIONING
    assert r.tier.status()["pools"][0]["failures"] == 0


async def test_a_run_that_fails_part_way_keeps_what_it_made() -> None:
    r = rig()
    r.provider.fail_next(1, diagnostic="quota exceeded", create=1)
    await r.step([one(2), one(2)])
    states = {m.name: m.state for m in r.tier.book.present()}
    assert states == {"cpu-1": NodeLifecycle.PROVISIONING, "cpu-2": NodeLifecycle.REQUESTED}


async def test_a_machine_killed_by_hand_is_failed_removed_and_replaced() -> None:
    r = rig()
    await r.step([one()])
    r.cluster.boot()
    await r.step([one()])
    r.cluster.kill("cpu-1")
    await r.step([one()])
    assert r.kinds()[-4:] == ["node_failed", "node_removing", "node_requested", "node_removed"]
    assert "lost: killed by hand" in r.events[-4][1]
    assert r.provider.node_sets("cpu")[-1] == {"cpu-2"}
    assert r.state("cpu-1") is NodeLifecycle.REMOVED


async def test_a_machine_being_removed_keeps_its_name_until_it_is_gone() -> None:
    r = rig()
    await r.step([one()])
    r.cluster.boot()
    await r.step([one()])
    r.provider.hold()  # the removal of the lost machine is under way
    r.cluster.kill("cpu-1")
    await r.tier.step([one(2)], {})
    # More replicas wait while cpu-1 is still being removed: the next name is cpu-3.
    await r.tier.step([one(2), Need("f-2", "f", 2.0, 0.0, 0.0)], {})
    names = {m.name: m.removing for m in r.tier.book.present()}
    assert names == {"cpu-1": True, "cpu-2": False, "cpu-3": False}
    r.provider.release()
    await r.tier.settle()


async def test_a_machine_that_never_joins_fails_after_join_timeout() -> None:
    r = rig()
    await r.step([one()])
    r.clock.now += 31
    await r.step([])
    assert r.state("cpu-1") in (NodeLifecycle.FAILED, NodeLifecycle.REMOVED)
    assert any("did not join within 30s" in message for _, message, _ in r.events)


async def test_nothing_is_decided_while_the_head_does_not_answer() -> None:
    r = rig(pool(min=1))
    r.cluster.unreachable = True
    await r.step([one()])
    assert r.provider.applied == []


async def test_the_book_survives_a_restart_and_a_removed_pool_is_emptied(tmp_path: Path) -> None:
    book = tmp_path / "pools" / "machines.json"
    r = rig(book=book)
    await r.step([one()])
    r.cluster.boot()
    await r.step([one()])
    assert r.state("cpu-1") is NodeLifecycle.JOINED
    # A new gateway on the same state, whose stack has no pools any more.
    again = NodeTier({}, r.provider, r.cluster, PoolBook(book), lambda *_: None, clock=r.clock)
    assert again.book.get("cpu-1") is not None
    await again.step([], {})
    await again.settle()
    assert r.cluster.drained == ["cpu-1"]
    await again.step([], {})
    await again.settle()
    assert again.book.get("cpu-1").state is NodeLifecycle.REMOVED  # type: ignore[union-attr]
    assert r.provider.node_sets("cpu")[-1] == set()


async def test_one_run_at_a_time_per_pool() -> None:
    r = rig()
    r.provider.hold()
    await r.tier.step([one()], {})
    await r.tier.step([one(), Need("f-2", "f", 2.0, 0.0, 0.0)], {})
    for _ in range(200):  # the run asks for the join info in a thread first
        if r.provider.running:
            break
        await asyncio.sleep(0.01)
    assert r.provider.running == 1
    r.provider.release()
    await r.tier.settle()
    await r.step([one(), Need("f-2", "f", 2.0, 0.0, 0.0)])
    assert r.provider.node_sets("cpu") == [{"cpu-1"}, {"cpu-1", "cpu-2"}]
