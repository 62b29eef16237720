"""The second tier's decision: which machines each pool should add, drain and remove.

Pure: `decide(view)` looks at the replicas that wait for room, the pools' machines and
their specs, and returns the changes, each with its reason. The node tier
(`control/node_tier.py`) gathers the view and carries the changes out.

The rules, in the order they apply per pool:
- a machine that failed, or finished draining, is removed;
- replicas that wait for room are packed (largest first) onto the room that is coming
  (machines requested or provisioning) or free on joined machines of a pool whose shape
  fits them; what is left asks for new machines of the smallest shape that fits;
- the pool keeps `warm` machines spare (joined or coming, no replicas) and `min` in all;
- never above `max`, never more than MAX_STEP new machines at once;
- a joined machine empty for `scale_down_after` is drained, unless that would go below
  `min` or `warm`, or replicas still wait for that pool; never one with replicas.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from nuvem.stack.pools import MAX_STEP, PoolSpec


class NodeLifecycle(enum.Enum):
    REQUESTED = "requested"  # decided; the provider has not been asked yet
    PROVISIONING = "provisioning"  # the provider makes it, or it boots and joins
    JOINED = "joined"  # a live node of the cluster; replicas may run on it
    DRAINING = "draining"  # takes no new replicas; removed once empty
    REMOVED = "removed"  # the provider removed it (kept for the record)
    FAILED = "failed"  # did not join in time, or was lost; removed next


# Machines that count toward the pool's size (and so toward min and max).
COUNTED = frozenset(
    {
        NodeLifecycle.REQUESTED,
        NodeLifecycle.PROVISIONING,
        NodeLifecycle.JOINED,
        NodeLifecycle.DRAINING,
    }
)
_COMING = frozenset({NodeLifecycle.REQUESTED, NodeLifecycle.PROVISIONING})


@dataclass(frozen=True, slots=True)
class Need:
    """One replica that waits because no node has room for it."""

    replica: str
    function: str
    cpu: float
    gpu: float
    memory: float  # bytes; 0: not reserved
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Room:
    cpu: float
    gpu: float
    memory: float

    def fits(self, need: Need) -> bool:
        return need.cpu <= self.cpu and need.gpu <= self.gpu and need.memory <= self.memory

    def minus(self, need: Need) -> Room:
        return Room(self.cpu - need.cpu, self.gpu - need.gpu, self.memory - need.memory)


@dataclass(frozen=True, slots=True)
class PoolNode:
    """One machine of a pool, as the node tier knows it."""

    name: str
    pool: str
    state: NodeLifecycle
    replicas: int = 0  # replicas on it now (joined machines only)
    free: Room | None = None  # what is free on it now; None: not joined (all of it)
    empty_since: float | None = None  # joined and empty since then; None: not empty


@dataclass(frozen=True, slots=True)
class NodeView:
    now: float
    pools: Mapping[str, PoolSpec]
    nodes: Sequence[PoolNode]  # every machine not removed
    needs: Sequence[Need]
    # Names still held by machines outside the view (being removed): a new machine must
    # not take one, or its record would replace the old machine's before it is gone.
    reserved: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class NodeChange:
    kind: Literal["add", "drain", "remove"]
    pool: str
    node: str
    reason: str


def shape_room(pool: PoolSpec) -> Room:
    return Room(float(pool.node.cpus), float(pool.node.gpus), float(pool.node.memory))


def fits_pool(need: Need, pool: PoolSpec) -> bool:
    """Whether one empty machine of `pool` could take `need`."""
    labels = pool.node_labels("")
    if any(labels.get(key) != value for key, value in need.labels.items()):
        return False
    return shape_room(pool).fits(need)


def _smallest_first(pools: Mapping[str, PoolSpec]) -> list[PoolSpec]:
    return sorted(pools.values(), key=lambda p: (p.node.gpus, p.node.cpus, p.node.memory, p.name))


def assign(needs: Sequence[Need], pools: Mapping[str, PoolSpec]) -> dict[str, list[Need]]:
    """Each need to the pool with the smallest machine that takes it; needs no pool can
    take are left out (their pending reason already says what is short)."""
    by_pool: dict[str, list[Need]] = {}
    ordered = _smallest_first(pools)
    for need in needs:
        for pool in ordered:
            if fits_pool(need, pool):
                by_pool.setdefault(pool.name, []).append(need)
                break
    return by_pool


def _size(need: Need) -> tuple[float, float, float, str]:
    return (need.gpu, need.cpu, need.memory, need.replica)


def pack(
    needs: Sequence[Need], busy: list[Room], spare: list[Room], shape: Room
) -> tuple[int, int]:
    """First-fit decreasing: place `needs` onto the free room of busy machines, then onto
    spare machines (empty or coming), then onto new machines of `shape`. Returns how many
    new machines that takes and how many spare machines took something."""
    rooms = busy + spare
    used: set[int] = set()
    fresh: list[Room] = []
    for need in sorted(needs, key=_size, reverse=True):
        for index, room in enumerate(rooms):
            if room.fits(need):
                rooms[index] = room.minus(need)
                if index >= len(busy):
                    used.add(index)
                break
        else:
            for index, room in enumerate(fresh):
                if room.fits(need):
                    fresh[index] = room.minus(need)
                    break
            else:
                fresh.append(shape.minus(need))
    return len(fresh), len(used)


def _names(pool: str, taken: set[str], count: int) -> list[str]:
    """The `count` lowest free names `pool-N` (N from 1): a removed machine's name and
    address are reused, so a local pool stays within its address range."""
    names: list[str] = []
    index = 1
    while len(names) < count:
        name = f"{pool}-{index}"
        if name not in taken:
            names.append(name)
        index += 1
    return names


def node_index(name: str) -> int:
    """`cpu-3` -> 3: the stable ordinal a module may use for ids and addresses."""
    return int(name.rsplit("-", 1)[1])


def decide(view: NodeView) -> list[NodeChange]:
    """The changes to make now, every one with its reason."""
    changes: list[NodeChange] = []
    assigned = assign(view.needs, view.pools)
    by_pool: dict[str, list[PoolNode]] = {}
    for node in view.nodes:
        by_pool.setdefault(node.pool, []).append(node)
    for name in sorted(set(view.pools) | set(by_pool)):
        nodes = by_pool.get(name, [])
        pool = view.pools.get(name)
        if pool is None:
            changes += _retire_pool(name, nodes)
        else:
            changes += _decide_pool(pool, nodes, assigned.get(name, []), view.now, view.reserved)
    return changes


def _retire_pool(name: str, nodes: list[PoolNode]) -> list[NodeChange]:
    """A pool no longer in the stack: its machines go as soon as they are empty."""
    changes = []
    for node in nodes:
        if node.replicas:
            continue
        if node.state in (NodeLifecycle.JOINED,):
            changes.append(NodeChange("drain", name, node.name, f"pool {name} was removed"))
        elif node.state is not NodeLifecycle.REMOVED:
            changes.append(NodeChange("remove", name, node.name, f"pool {name} was removed"))
    return changes


def _decide_pool(
    pool: PoolSpec,
    nodes: list[PoolNode],
    needs: list[Need],
    now: float,
    reserved: frozenset[str] = frozenset(),
) -> list[NodeChange]:
    changes: list[NodeChange] = []
    for node in nodes:
        if node.state is NodeLifecycle.FAILED:
            changes.append(NodeChange("remove", pool.name, node.name, "it failed"))
        elif node.state is NodeLifecycle.DRAINING and not node.replicas:
            changes.append(NodeChange("remove", pool.name, node.name, "it is drained"))
    going = {c.node for c in changes}
    counted = [n for n in nodes if n.state in COUNTED and n.name not in going]
    coming = [n for n in counted if n.state in _COMING]
    joined = [n for n in counted if n.state is NodeLifecycle.JOINED]
    # Room that is free or coming: waiting replicas go there before new machines are asked.
    shape = shape_room(pool)
    busy = [n.free or shape for n in joined if n.replicas]
    idle = [n.free or shape for n in joined if not n.replicas]
    spares = idle + [shape for _ in coming]
    wanted, used = pack(needs, busy, spares, shape)
    spare = len(spares) - used
    add_for_warm = max(0, pool.warm - spare)
    add_for_min = max(0, pool.min - len(counted))
    room_left = max(0, pool.max - len(counted))
    add = min(max(wanted + add_for_warm, add_for_min), room_left, MAX_STEP)
    if add:
        reason = _add_reason(pool, needs, wanted, add_for_warm, add_for_min)
        taken = {n.name for n in nodes} | reserved
        changes += [NodeChange("add", pool.name, n, reason) for n in _names(pool.name, taken, add)]
        return changes  # growing: nothing is drained in the same decision
    if needs and wanted:
        return changes  # at max: the waiting replicas would take any machine that frees up
    changes += _scale_down(pool, counted, joined, spare, now, bool(needs))
    return changes


def _add_reason(pool: PoolSpec, needs: list[Need], wanted: int, for_warm: int, for_min: int) -> str:
    parts = []
    if wanted:
        functions = sorted({n.function for n in needs})
        parts.append(
            f"{len(needs)} replica(s) of {', '.join(functions)} wait for room "
            f"({wanted} machine(s) of {pool.node.cpus} CPU, {pool.node.gpus} GPU, "
            f"{pool.node.memory / 2**30:g} GiB take them)"
        )
    if for_warm:
        parts.append(f"the pool keeps {pool.warm} machine(s) warm")
    if for_min and not parts:
        parts.append(f"the pool keeps at least {pool.min} machine(s)")
    return "; ".join(parts)


def _scale_down(
    pool: PoolSpec,
    counted: list[PoolNode],
    joined: list[PoolNode],
    spare: int,
    now: float,
    waiting: bool,
) -> list[NodeChange]:
    if waiting:
        return []  # replicas wait for this pool: the empty machines are about to fill
    active = [n for n in counted if n.state is not NodeLifecycle.DRAINING]
    over_max = max(0, len(active) - pool.max)
    empty = sorted(
        (n for n in joined if n.replicas == 0 and n.empty_since is not None),
        key=lambda n: (n.empty_since, n.name),
    )
    changes = []
    size, idle = len(active), spare
    for node in empty:
        assert node.empty_since is not None
        expired = now - node.empty_since >= pool.scale_down_after
        if over_max > 0:
            reason = f"the pool holds at most {pool.max} machine(s)"
            over_max -= 1
        elif expired and size > pool.min and idle > pool.warm:
            empty_for = now - node.empty_since
            reason = f"empty for {empty_for:.0f}s (scale_down_after {pool.scale_down_after:g}s)"
        else:
            continue
        changes.append(NodeChange("drain", pool.name, node.name, reason))
        size -= 1
        idle -= 1
    return changes
