"""What `nuvem plan` previews of a pool, pure: the machines a spec would settle on, drift."""

from __future__ import annotations

from typing import Any

from nuvem.cluster.membership import Node, NodeState, Resources
from nuvem.control.node_plan import NodeLifecycle
from nuvem.control.pool_book import Machine
from nuvem.control.pool_preview import Drift, drift, target
from nuvem.stack.pools import PoolSpec

NOW = 1_800_000_000.0


def pool(**overrides: Any) -> PoolSpec:
    return PoolSpec.model_validate({"name": "cpu", "max": 4, **overrides})


def machine(name: str, state: NodeLifecycle = NodeLifecycle.JOINED, **changes: Any) -> Machine:
    index = int(name.rsplit("-", 1)[1])
    values: dict[str, Any] = {"address": f"10.0.0.{index}", "reason": "joined", **changes}
    return Machine(name, "cpu", state, requested_at=NOW - 60, changed_at=NOW - 60, **values)


def node(name: str, state: NodeState = NodeState.ALIVE, death: str = "") -> Node:
    room = Resources(cpu=1, gpu=0, memory=2**31)
    return Node(
        id=f"id-{name}",
        address="10.0.0.1",
        port=1,
        name=name,
        head=False,
        state=state,
        labels={},
        total=room,
        available=room,
        started_at=NOW - 50,
        ended_at=None,
        death=death,
    )


def test_a_new_pool_wants_min_and_warm_machines() -> None:
    wanted = target(pool(min=2, warm=3), [], {}, NOW)
    assert list(wanted) == ["cpu-1", "cpu-2", "cpu-3"]
    assert wanted["cpu-2"].labels["nuvem.dev/node"] == "cpu-2"


def test_lower_bounds_drain_empty_machines_but_never_busy_ones() -> None:
    machines = [machine("cpu-1"), machine("cpu-2"), machine("cpu-3")]
    busy = {"10.0.0.1": 1, "10.0.0.2": 2}
    assert list(target(pool(max=1), machines, busy, NOW)) == ["cpu-1", "cpu-2"]
    # Idle for no time at all: the plan drains only for the bounds, never for idling.
    assert list(target(pool(max=4), machines, busy, NOW)) == ["cpu-1", "cpu-2", "cpu-3"]


def test_failed_and_removing_machines_are_not_kept_and_the_shape_follows_the_spec() -> None:
    machines = [
        machine("cpu-1", NodeLifecycle.FAILED),
        machine("cpu-2", removing=True),
        machine("cpu-3"),
    ]
    wanted = target(pool(min=2, node={"cpus": 4}), machines, {}, NOW)
    # Named as the tier names them: the lowest names no machine in its view holds.
    assert list(wanted) == ["cpu-2", "cpu-3"]
    assert {r.cpus for r in wanted.values()} == {4}
    assert target(None, machines, {}, NOW) == {}


def test_drift_is_a_failed_machine_or_a_joined_one_whose_node_died() -> None:
    machines = [
        machine("cpu-1", NodeLifecycle.FAILED, reason="did not join within 300s"),
        machine("cpu-2"),
        machine("cpu-3"),
        machine("cpu-4"),
        machine("cpu-5", NodeLifecycle.PROVISIONING),
    ]
    matched = {"cpu-2": node("cpu-2", NodeState.DEAD, "killed by hand"), "cpu-3": node("cpu-3")}
    assert drift(machines, matched) == [
        Drift("cpu-1", "failed: did not join within 300s"),
        Drift("cpu-2", "lost: killed by hand"),
        Drift("cpu-4", "lost: its node is no longer in the cluster"),
    ]
    # The cluster did not answer: only what the book knows.
    assert drift(machines, None) == [Drift("cpu-1", "failed: did not join within 300s")]
