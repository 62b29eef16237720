"""What `nuvem plan` shows of a pool: its machines under another spec, and its drift.

Pure. `target` answers "which machines would the tier want if this were the pool's spec?"
with the tier's own policy (`node_plan.decide`, no replicas waiting): the machines it has
now, less those the new bounds drain, plus those `min` and `warm` add, each shaped as the
new spec says. The provider's plan for those is what applying the file changes. `drift`
names the machines that failed or were lost: the book says failed, or a joined machine's
Ray node is dead or gone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nuvem.cluster.membership import Node, NodeState
from nuvem.control.node_plan import NodeLifecycle, NodeView, PoolNode, decide, node_index
from nuvem.control.pool_book import Machine
from nuvem.providers.provider import NodeRequest, PlannedChange
from nuvem.stack.pools import PoolSpec


@dataclass(frozen=True, slots=True)
class Drift:
    node: str
    reason: str


@dataclass(frozen=True, slots=True)
class PoolPreview:
    """One pool for `nuvem plan` (see `stack_plan.LivePool`)."""

    name: str
    live: PoolSpec | None  # the tier's spec now; None: not a pool of the tier (any more)
    planned: list[PlannedChange]  # the provider's plan for `target` under the file's spec
    underway: list[PlannedChange]  # its plan for what the tier wants now
    drift: list[Drift]


def node_request(spec: PoolSpec, name: str) -> NodeRequest:
    return NodeRequest(
        index=node_index(name),
        cpus=spec.node.cpus,
        memory=spec.node.memory,
        gpus=spec.node.gpus,
        labels=spec.node_labels(name),
    )


def target(
    spec: PoolSpec | None,
    machines: Sequence[Machine],
    replicas_at: Mapping[str, int],
    now: float,
) -> dict[str, NodeRequest]:
    """The machines the tier would settle on with `spec` (None: the pool is gone), given
    the pool's `machines` (those not removed) and the replicas per node address."""
    if spec is None:
        return {}
    # As the tier's own view: machines on their way out are left out, failed ones are in
    # (the policy removes them, and their names stay taken meanwhile).
    kept = [m for m in machines if not m.removing]
    view = []
    for machine in kept:
        replicas = replicas_at.get(machine.address, 0) if machine.address else 0
        # Empty since now: the plan is about the spec, not about how long a machine idled;
        # only the new bounds (max, warm) drain a machine here.
        empty_since = now if machine.state is NodeLifecycle.JOINED and not replicas else None
        view.append(PoolNode(machine.name, spec.name, machine.state, replicas, None, empty_since))
    changes = decide(NodeView(now, {spec.name: spec}, view, ()))
    going = {c.node for c in changes if c.kind in ("drain", "remove")}
    names = [m.name for m in kept if m.name not in going and m.state is not NodeLifecycle.FAILED]
    names += [c.node for c in changes if c.kind == "add"]
    return {name: node_request(spec, name) for name in sorted(names, key=node_index)}


def drift(machines: Sequence[Machine], matched: Mapping[str, Node] | None) -> list[Drift]:
    """The pool's machines that failed, or whose Ray node died before the tier noticed
    (`matched`: the Ray node of each machine; None when the cluster did not answer)."""
    found = []
    for machine in machines:
        if machine.state is NodeLifecycle.FAILED:
            found.append(Drift(machine.name, f"failed: {machine.reason}"))
        elif machine.state is NodeLifecycle.JOINED and not machine.removing and matched is not None:
            node = matched.get(machine.name)
            if node is None:
                found.append(Drift(machine.name, "lost: its node is no longer in the cluster"))
            elif node.state is NodeState.DEAD:
                found.append(Drift(machine.name, f"lost: {node.death or 'its node is dead'}"))
    return found
