"""Where a replica may run, in the cluster engine's terms, and why it runs nowhere yet.

Pure functions: the runtime asks the cluster for its nodes and passes them in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nuvem.stack.container import ANY_ENGINE, CONTAINERS_LABEL
from nuvem.stack.function import FunctionSpec


@dataclass(frozen=True, slots=True)
class NodeRoom:
    """One live node: what it has in all and what is free now (Ray's resource names)."""

    address: str
    total: Mapping[str, float]
    free: Mapping[str, float]
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Demand:
    cpu: float
    gpu: float
    memory: float  # bytes; 0: not reserved
    labels: Mapping[str, str]

    def resources(self) -> dict[str, float]:
        wanted = {"CPU": self.cpu, "GPU": self.gpu, "memory": self.memory}
        return {name: amount for name, amount in wanted.items() if amount > 0}


def demand_of(spec: FunctionSpec) -> Demand:
    resources = spec.resources
    labels = dict(spec.placement.labels)
    if spec.image is not None:  # only a node with a container engine runs it
        labels.setdefault(CONTAINERS_LABEL, ANY_ENGINE)
    return Demand(
        cpu=resources.cpu,
        gpu=resources.gpu,
        memory=float(resources.memory or 0),
        labels=labels,
    )


def label_matches(wanted: str, value: str | None) -> bool:
    """Whether a node's label `value` (None: it has none) meets `wanted`, in Ray's label
    selector terms: `v`, `!v`, `in(a,b)`, `!in(a,b)`."""
    negated = wanted.startswith("!")
    body = wanted[1:] if negated else wanted
    if body.startswith("in(") and body.endswith(")"):
        found = value is not None and value in {v.strip() for v in body[3:-1].split(",")}
    else:
        found = value == body
    return found != negated


def actor_options(spec: FunctionSpec) -> dict[str, Any]:
    """The options of the replica's actor: its resources, labels and spreading."""
    demand = demand_of(spec)
    options: dict[str, Any] = {
        "num_cpus": demand.cpu,
        "num_gpus": demand.gpu,
        # The controller replaces lost replicas itself, with back-off and events: Ray must
        # not restart them behind its back.
        "max_restarts": 0,
        "max_task_retries": 0,
        # prepare/serve/wait/status run at once on the actor's event loop.
        "max_concurrency": 16,
    }
    if demand.memory:
        options["memory"] = demand.memory
    if demand.labels:
        options["label_selector"] = dict(demand.labels)
    if spec.placement.spread:
        options["scheduling_strategy"] = "SPREAD"
    return options


def _describe(name: str, amount: float) -> str:
    if name == "memory":
        return f"{amount / 2**20:.0f} MiB of memory"
    unit = {"CPU": "CPU", "GPU": "GPU"}.get(name, name)
    return f"{amount:g} {unit}"


@dataclass(frozen=True, slots=True)
class Shortage:
    short: str  # cpu, gpu, memory, labels, engine, nodes, or busy (fits, but not now)
    reason: str


def pending_reason(demand: Demand, nodes: Sequence[NodeRoom]) -> Shortage:
    """Why no node takes the replica now, naming what is short, and what would help."""
    wanted = demand.resources()
    need = ", ".join(_describe(n, a) for n, a in wanted.items()) or "nothing"
    if not nodes:
        return Shortage("nodes", "no node is alive in the cluster; join one with `nuvem node join`")
    labelled = [
        n for n in nodes if all(label_matches(v, n.labels.get(k)) for k, v in demand.labels.items())
    ]
    if not labelled and CONTAINERS_LABEL in demand.labels:
        engines = [n for n in nodes if label_matches(ANY_ENGINE, n.labels.get(CONTAINERS_LABEL))]
        if not engines:
            return Shortage(
                "engine",
                f"no node runs containers (none has the label {CONTAINERS_LABEL}); install "
                "podman or Docker on a node and join it with `nuvem node join` (it detects "
                "the engine), or run the function as a handler",
            )
    if not labelled:
        wanted_labels = ", ".join(f"{k}={v}" for k, v in sorted(demand.labels.items()))
        return Shortage("labels", f"no node has the labels {wanted_labels}; join one with --label")
    for name, amount in wanted.items():
        largest = max(n.total.get(name, 0.0) for n in labelled)
        if largest < amount:
            field_name = name.lower()
            return Shortage(
                field_name,
                f"no node has {_describe(name, amount)} (the largest has "
                f"{_describe(name, largest)}); join a bigger node or lower "
                f"resources.{field_name}",
            )
    short: list[str] = []
    kinds: list[str] = []
    for name, amount in wanted.items():
        most_free = max(n.free.get(name, 0.0) for n in labelled)
        if most_free < amount:
            free = _describe(name, most_free)
            short.append(f"{_describe(name, amount)} wanted, at most {free} free")
            kinds.append(name.lower())
    if short:
        return Shortage(
            kinds[0],
            f"every node that fits ({need}) is busy: {'; '.join(short)}; it starts when room "
            "frees up or a node joins",
        )
    return Shortage("busy", f"waiting for the cluster to place it ({need})")
