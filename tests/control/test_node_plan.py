"""The second tier's policy: examples, then invariants checked with Hypothesis."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nuvem.control.node_plan import (
    COUNTED,
    Need,
    NodeChange,
    NodeLifecycle,
    NodeView,
    PoolNode,
    Room,
    decide,
    node_index,
)
from nuvem.stack.pools import MAX_STEP, PoolSpec

GIB = 2**30


def pool(name: str = "cpu", **overrides: Any) -> PoolSpec:
    values: dict[str, Any] = {
        "name": name,
        "min": 0,
        "max": 3,
        "warm": 0,
        "node": {"cpus": 2, "memory": "4Gi", "labels": {"pool": name}},
        "scale_down_after": 60,
        **overrides,
    }
    return PoolSpec.model_validate(values)


def need(cpu: float = 1, gpu: float = 0, memory: float = 0, **labels: str) -> Need:
    return Need(f"r{cpu}{gpu}{memory}", "f", cpu, gpu, memory, labels)


def joined(
    name: str, replicas: int = 0, empty_since: float | None = None, **free: float
) -> PoolNode:
    room = Room(free.get("cpu", 2.0), free.get("gpu", 0.0), free.get("memory", 4.0 * GIB))
    return PoolNode(
        name,
        name.rsplit("-", 1)[0],
        NodeLifecycle.JOINED,
        replicas=replicas,
        free=room,
        empty_since=empty_since if not replicas else None,
    )


def view(
    pools: list[PoolSpec], nodes: list[PoolNode], needs: list[Need], now: float = 1000
) -> NodeView:
    return NodeView(now=now, pools={p.name: p for p in pools}, nodes=nodes, needs=needs)


def kinds(changes: list[NodeChange]) -> list[tuple[str, str]]:
    return [(c.kind, c.node) for c in changes]


# -- examples ----------------------------------------------------------------------------


def test_a_waiting_replica_asks_for_one_machine_named_after_the_pool() -> None:
    changes = decide(view([pool()], [], [need(1)]))
    assert kinds(changes) == [("add", "cpu-1")]
    assert "1 replica(s) of f wait for room" in changes[0].reason


def test_replicas_are_packed_onto_as_few_machines_as_fit() -> None:
    changes = decide(view([pool()], [], [need(1), need(1), need(1.5)]))
    assert kinds(changes) == [("add", "cpu-1"), ("add", "cpu-2")]


def test_room_that_is_coming_is_used_before_asking_again() -> None:
    coming = PoolNode("cpu-1", "cpu", NodeLifecycle.PROVISIONING)
    assert decide(view([pool()], [coming], [need(1)])) == []


def test_free_room_on_a_busy_machine_counts() -> None:
    busy = joined("cpu-1", replicas=1, cpu=1.0)
    assert decide(view([pool()], [busy], [need(1)])) == []
    assert kinds(decide(view([pool()], [busy], [need(1), need(1)]))) == [("add", "cpu-2")]


def test_the_smallest_machine_that_fits_is_chosen_and_labels_must_match() -> None:
    small = pool("small", node={"cpus": 1, "memory": "2Gi"})
    big = pool("big", node={"cpus": 8, "memory": "16Gi"})
    gpu = pool("gpu", node={"cpus": 8, "memory": "16Gi", "gpus": 1, "labels": {"acc": "t4"}})
    pools = [big, small, gpu]
    assert kinds(decide(view(pools, [], [need(1)]))) == [("add", "small-1")]
    assert kinds(decide(view(pools, [], [need(4)]))) == [("add", "big-1")]
    assert kinds(decide(view(pools, [], [need(1, gpu=1)]))) == [("add", "gpu-1")]
    assert kinds(decide(view(pools, [], [need(1, acc="t4")]))) == [("add", "gpu-1")]
    # Nothing takes it: no machine is asked for in vain.
    assert decide(view(pools, [], [need(16)])) == []
    assert decide(view(pools, [], [need(1, acc="a100")])) == []


def test_never_above_max_nor_more_than_the_step() -> None:
    assert len(decide(view([pool(max=2)], [], [need(2)] * 5))) == 2
    many = decide(view([pool(max=100)], [], [need(2)] * 50))
    assert len(many) == MAX_STEP


def test_warm_machines_are_kept_and_refilled() -> None:
    warm = pool(warm=1)
    assert kinds(decide(view([warm], [], []))) == [("add", "cpu-1")]
    # The warm machine took the replica: another is made warm.
    taken = joined("cpu-1", replicas=1, cpu=1.0)
    assert kinds(decide(view([warm], [taken], []))) == [("add", "cpu-2")]
    # A waiting replica and an empty warm pool: one for it, one to stay warm.
    assert kinds(decide(view([warm], [], [need(2)]))) == [("add", "cpu-1"), ("add", "cpu-2")]


def test_min_machines_are_kept() -> None:
    assert kinds(decide(view([pool(min=2)], [], []))) == [("add", "cpu-1"), ("add", "cpu-2")]
    idle = [joined("cpu-1", empty_since=0), joined("cpu-2", empty_since=0)]
    assert decide(view([pool(min=2)], idle, [])) == []


def test_an_empty_machine_is_drained_after_scale_down_after_then_removed() -> None:
    empty = joined("cpu-1", empty_since=950)
    assert decide(view([pool()], [empty], [], now=1000)) == []
    changes = decide(view([pool()], [empty], [], now=1011))
    assert kinds(changes) == [("drain", "cpu-1")]
    assert "empty for 61s" in changes[0].reason
    drained = PoolNode("cpu-1", "cpu", NodeLifecycle.DRAINING)
    assert kinds(decide(view([pool()], [drained], []))) == [("remove", "cpu-1")]


def test_a_machine_with_replicas_is_never_drained() -> None:
    busy = joined("cpu-1", replicas=2, cpu=0.0)
    assert decide(view([pool(max=0)], [busy], [], now=10**9)) == []
    draining = PoolNode("cpu-1", "cpu", NodeLifecycle.DRAINING, replicas=1)
    assert decide(view([pool()], [draining], [])) == []


def test_failed_machines_are_removed_and_replaced_when_needed() -> None:
    failed = PoolNode("cpu-1", "cpu", NodeLifecycle.FAILED)
    assert kinds(decide(view([pool()], [failed], [need(1)]))) == [
        ("remove", "cpu-1"),
        ("add", "cpu-2"),
    ]


def test_lowering_max_drains_empty_machines_at_once() -> None:
    nodes = [joined(f"cpu-{i}", empty_since=999) for i in (1, 2, 3)]
    changes = decide(view([pool(max=1)], nodes, [], now=1000))
    assert kinds(changes) == [("drain", "cpu-1"), ("drain", "cpu-2")]
    assert "at most 1" in changes[0].reason


def test_a_removed_pool_lets_its_empty_machines_go() -> None:
    nodes = [
        joined("old-1", empty_since=999),
        joined("old-2", replicas=1),
        PoolNode("old-3", "old", NodeLifecycle.REQUESTED),
    ]
    assert kinds(decide(view([], nodes, []))) == [("drain", "old-1"), ("remove", "old-3")]


def test_nothing_drains_while_replicas_wait_for_the_pool() -> None:
    full = pool(max=1)
    nodes = [joined("cpu-1", replicas=1, cpu=0.0)]
    assert decide(view([full], nodes, [need(1)], now=10**6)) == []


def test_names_of_machines_being_removed_are_not_reused() -> None:
    going = NodeView(1000, {"cpu": pool()}, [], [need(2)], reserved=frozenset({"cpu-1"}))
    assert kinds(decide(going)) == [("add", "cpu-2")]


def test_removed_names_are_reused() -> None:
    nodes = [joined("cpu-2", replicas=1, cpu=0.0)]
    assert kinds(decide(view([pool()], nodes, [need(2)]))) == [("add", "cpu-1")]
    assert node_index("cpu-12") == 12
    assert node_index("gpu-a100-3") == 3


# -- invariants --------------------------------------------------------------------------

_STATES = list(NodeLifecycle)


@st.composite
def views(draw: st.DrawFn) -> NodeView:
    count = draw(st.integers(1, 2))
    pools = []
    for index in range(count):
        low = draw(st.integers(0, 3))
        high = draw(st.integers(low, 6))
        pools.append(
            pool(
                f"p{index}",
                min=low,
                max=high,
                warm=draw(st.integers(0, high)),
                node={
                    "cpus": draw(st.integers(1, 4)),
                    "memory": "4Gi",
                    "gpus": draw(st.integers(0, 1)),
                },
                scale_down_after=draw(st.sampled_from([1, 60, 600])),
            )
        )
    nodes = []
    for index in range(draw(st.integers(0, 8))):
        owner = draw(st.sampled_from([p.name for p in pools] + ["gone"]))
        state = draw(st.sampled_from([*_STATES[:-2], NodeLifecycle.FAILED]))
        replicas = (
            draw(st.integers(0, 2))
            if state in (NodeLifecycle.JOINED, NodeLifecycle.DRAINING)
            else 0
        )
        free = (
            Room(draw(st.sampled_from([0.0, 1.0, 2.0])), 0.0, 4.0 * GIB)
            if state is NodeLifecycle.JOINED
            else None
        )
        empty_since = (
            draw(st.sampled_from([0.0, 990.0]))
            if state is NodeLifecycle.JOINED and not replicas
            else None
        )
        nodes.append(PoolNode(f"{owner}-{index + 1}", owner, state, replicas, free, empty_since))
    needs = [
        Need(
            f"r{i}",
            "f",
            draw(st.sampled_from([0.5, 1.0, 2.0, 8.0])),
            draw(st.sampled_from([0.0, 0.0, 1.0])),
            0.0,
        )
        for i in range(draw(st.integers(0, 12)))
    ]
    return NodeView(now=1000.0, pools={p.name: p for p in pools}, nodes=nodes, needs=needs)


def after(view_: NodeView, changes: list[NodeChange]) -> NodeView:
    """The view once the changes are made and nothing else moved."""
    nodes = {n.name: n for n in view_.nodes}
    for change in changes:
        if change.kind == "add":
            nodes[change.node] = PoolNode(change.node, change.pool, NodeLifecycle.REQUESTED)
        elif change.kind == "drain":
            old = nodes[change.node]
            nodes[change.node] = PoolNode(old.name, old.pool, NodeLifecycle.DRAINING)
        else:
            del nodes[change.node]
    return NodeView(view_.now, view_.pools, list(nodes.values()), view_.needs)


def active(view_: NodeView, pool_name: str) -> int:
    return sum(
        1
        for n in view_.nodes
        if n.pool == pool_name and n.state in COUNTED and n.state is not NodeLifecycle.DRAINING
    )


def counted(view_: NodeView, pool_name: str) -> int:
    return sum(1 for n in view_.nodes if n.pool == pool_name and n.state in COUNTED)


@settings(max_examples=400, deadline=None)
@given(views())
def test_never_outside_min_and_max(v: NodeView) -> None:
    changes = decide(v)
    later = after(v, changes)
    for name, spec in v.pools.items():
        before_count, after_count = counted(v, name), counted(later, name)
        if after_count > before_count:
            assert after_count <= spec.max, changes
        assert active(later, name) >= min(spec.min, active(v, name)), changes
        if active(v, name) >= spec.min:
            assert active(later, name) >= spec.min, changes


@settings(max_examples=400, deadline=None)
@given(views())
def test_never_drains_or_removes_a_machine_with_replicas(v: NodeView) -> None:
    nodes = {n.name: n for n in v.nodes}
    for change in decide(v):
        if change.kind != "add":
            assert nodes[change.node].replicas == 0, change


@settings(max_examples=400, deadline=None)
@given(views())
def test_a_bounded_step_with_fresh_names(v: NodeView) -> None:
    changes = decide(v)
    taken = {n.name for n in v.nodes}
    for name in v.pools:
        added = [c.node for c in changes if c.kind == "add" and c.pool == name]
        assert len(added) <= MAX_STEP
        assert not set(added) & taken
        assert len(set(added)) == len(added)


@settings(max_examples=400, deadline=None)
@given(views())
def test_no_flapping_under_constant_load(v: NodeView) -> None:
    # Once its changes are made, the same load asks for nothing more: no machine added
    # again, none drained that the first decision kept.
    again = decide(after(v, decide(v)))
    assert [c for c in again if c.kind in ("add", "drain")] == []


@settings(max_examples=200, deadline=None)
@given(views())
def test_every_change_says_why(v: NodeView) -> None:
    assert all(change.reason for change in decide(v))
