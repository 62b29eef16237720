"""The second tier: machines added and removed by themselves, as the replicas need them.

Stepped by the controller loop once a tick (`step`), after the replica tier: it looks at
the cluster's nodes and the replicas that wait for room, asks `node_plan.decide` what to
change, records each machine's lifecycle in the `PoolBook`, and runs the pool's provider
(Terraform) in the background whenever the machines a pool should have change: one run
at a time per pool, retried with back-off when it fails. Every decision is an event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nuvem.backoff import backoff
from nuvem.cluster.membership import Node, NodeState, newest_by
from nuvem.control.node_plan import (
    NodeChange,
    NodeLifecycle,
    NodeView,
    PoolNode,
    Room,
    decide,
    node_index,
)
from nuvem.control.pool_book import Machine, PoolBook
from nuvem.control.pool_preview import PoolPreview, drift, target
from nuvem.errors import NotFound, NuvemError
from nuvem.providers.provider import (
    JoinInfo,
    MachineInfo,
    NodeProvider,
    NodeRequest,
    ProgressSink,
    ProviderFailed,
)
from nuvem.stack.pools import NODE_LABEL, POOL_LABEL, PoolSpec

log = logging.getLogger(__name__)

RETRY_BASE = 2.0  # seconds before the first retry of a failed provider run; doubles
RETRY_CAP = 120.0
DRAIN_DEADLINE = 120.0  # seconds Ray gives an empty machine to finish before it stops
_ASK_TIMEOUT = 3.0  # seconds for one look at the cluster's nodes


class PoolCluster(Protocol):
    """What the node tier needs of the cluster engine (blocking calls; run in a thread)."""

    def nodes(self) -> list[Node]: ...

    def drain(self, node: Node, reason: str, deadline: float) -> None: ...

    def join_info(self) -> JoinInfo: ...


EventSink = Callable[[str, str, dict[str, Any]], None]  # kind, message, data


@dataclass
class _Run:
    """The provider run of one pool: what it was asked to make, and how it went."""

    task: asyncio.Task[None] | None = None
    applied: frozenset[str] | None = None  # the machines of the last run; None: not known
    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""


class NodeTier:
    def __init__(
        self,
        pools: Mapping[str, PoolSpec],
        provider: NodeProvider,
        cluster: PoolCluster,
        book: PoolBook,
        events: EventSink,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pools = dict(pools)
        self.provider = provider
        self.cluster = cluster
        self.book = book
        self.events = events
        self.clock = clock
        self._runs: dict[str, _Run] = {}
        self._empty_since: dict[str, float] = {}
        self._seen: dict[str, Node] = {}  # each machine's Ray node at the last step
        self._replicas_at: dict[str, int] = {}  # replicas per node address at the last step

    # -- the loop ----------------------------------------------------------------------------

    async def step(self, needs: Sequence[Any], replicas_at: Mapping[str, int]) -> list[NodeChange]:
        """One look and one decision. `needs`: the replicas waiting for room
        (`node_plan.Need`); `replicas_at`: replicas per node address."""
        now = self.clock()
        nodes = await self._look()
        if nodes is None:
            return []  # the head did not answer: decide nothing on a stale picture
        self._seen = self._matched(nodes)
        self._replicas_at = dict(replicas_at)
        self._follow(now)
        removing = frozenset(m.name for m in self.book.present() if m.removing)
        view = NodeView(now, self.pools, self._pool_nodes(replicas_at, now), needs, removing)
        changes = decide(view)
        for change in changes:
            await self._make(change, now)
        for pool in {m.pool for m in self.book.present()} | set(self.pools):
            self._maybe_run(pool, now)
        return changes

    async def _look(self) -> list[Node] | None:
        try:
            async with asyncio.timeout(_ASK_TIMEOUT):
                return await asyncio.to_thread(self.cluster.nodes)
        except (NuvemError, TimeoutError) as exc:
            log.warning("node tier: could not list the cluster's nodes: %s", exc)
            return None

    async def settle(self) -> None:
        """Wait for the provider runs under way (tests step the tier with this)."""
        runs = [r.task for r in self._runs.values() if r.task is not None]
        await asyncio.gather(*runs, return_exceptions=True)

    async def close(self) -> None:
        """Let the runs under way finish: a Terraform run cut short leaves its state locked."""
        await self.settle()

    # -- following the cluster ---------------------------------------------------------------

    def _matched(self, nodes: Sequence[Node]) -> dict[str, Node]:
        """The newest Ray node of each pool machine, by the labels it joined with."""
        return newest_by(
            nodes, lambda n: n.labels.get(NODE_LABEL) if POOL_LABEL in n.labels else None
        )

    def _follow(self, now: float) -> None:
        """Lifecycle from what the cluster says: joined, lost, or never joined in time."""
        for machine in self.book.present():
            node = self._seen.get(machine.name)
            alive = node is not None and node.state is not NodeState.DEAD
            pool = self.pools.get(machine.pool)
            if machine.state in (NodeLifecycle.REQUESTED, NodeLifecycle.PROVISIONING):
                if alive and node is not None and node.started_at >= machine.requested_at - 1:
                    took = now - machine.requested_at
                    self.book.put(
                        machine.to(
                            NodeLifecycle.JOINED,
                            f"joined after {took:.1f}s",
                            now,
                            joined_at=now,
                            address=node.address,
                            node_id=node.id,
                        )
                    )
                    self._event(
                        "node_joined",
                        f"pool {machine.pool}: {machine.name} joined at {node.address} "
                        f"{took:.1f}s after it was requested",
                        machine,
                        seconds=round(took, 3),
                    )
                elif (
                    machine.state is NodeLifecycle.PROVISIONING
                    and pool is not None
                    and now - machine.changed_at > pool.join_timeout
                ):
                    self._fail(machine, f"did not join within {pool.join_timeout:g}s", now)
            elif machine.state is NodeLifecycle.JOINED and not alive:
                death = node.death if node is not None and node.death else "it left the cluster"
                self._fail(machine, f"lost: {death}", now)

    def _fail(self, machine: Machine, reason: str, now: float) -> None:
        self.book.put(machine.to(NodeLifecycle.FAILED, reason, now))
        self._event("node_failed", f"pool {machine.pool}: {machine.name} {reason}", machine)

    def _pool_nodes(self, replicas_at: Mapping[str, int], now: float) -> list[PoolNode]:
        view = []
        for machine in self.book.present():
            if machine.removing:
                continue  # on its way out already: the next run removes it
            node = self._seen.get(machine.name)
            replicas = replicas_at.get(machine.address, 0) if machine.address else 0
            free = None
            if node is not None and node.state is not NodeState.DEAD:
                available = node.available
                free = Room(available.cpu, available.gpu, float(available.memory))
            empty_since = None
            if machine.state is NodeLifecycle.JOINED and not replicas:
                empty_since = self._empty_since.setdefault(machine.name, now)
            else:
                self._empty_since.pop(machine.name, None)
            view.append(
                PoolNode(machine.name, machine.pool, machine.state, replicas, free, empty_since)
            )
        return view

    # -- carrying decisions out --------------------------------------------------------------

    async def _make(self, change: NodeChange, now: float) -> None:
        if change.kind == "add":
            machine = Machine(
                change.node, change.pool, NodeLifecycle.REQUESTED, change.reason, now, now
            )
            self.book.put(machine)
            self._event(
                "node_requested",
                f"pool {change.pool}: adding {change.node}: {change.reason}",
                machine,
            )
            return
        found = self.book.get(change.node)
        if found is None:
            return
        machine = found
        if change.kind == "drain":
            node = self._seen.get(machine.name)
            if node is not None and not await self._drain(machine, node, change.reason):
                return  # still joined: the next step decides again
            self.book.put(machine.to(NodeLifecycle.DRAINING, change.reason, now))
            self._event(
                "node_draining",
                f"pool {change.pool}: draining {change.node}: {change.reason}",
                machine,
            )
            return
        self.book.put(machine.to(machine.state, change.reason, now, removing=True))
        self._event(
            "node_removing", f"pool {change.pool}: removing {change.node}: {change.reason}", machine
        )

    async def _drain(self, machine: Machine, node: Node, reason: str) -> bool:
        """Ask Ray to place nothing new on `machine`'s node; False when the head would not."""
        try:
            deadline = time.time() + DRAIN_DEADLINE
            await asyncio.to_thread(self.cluster.drain, node, reason, deadline)
        except NuvemError as exc:
            log.warning("draining %s failed: %s", machine.name, exc)
            return False
        return True

    def _wanted(self, pool: str) -> dict[str, NodeRequest]:
        spec = self.pools.get(pool)
        wanted = {}
        for machine in self.book.present():
            if machine.pool != pool or machine.removing or spec is None:
                continue
            if machine.state is NodeLifecycle.FAILED:
                continue
            wanted[machine.name] = NodeRequest(
                index=node_index(machine.name),
                cpus=spec.node.cpus,
                memory=spec.node.memory,
                gpus=spec.node.gpus,
                labels=spec.node_labels(machine.name),
            )
        return wanted

    def _maybe_run(self, pool: str, now: float) -> None:
        run = self._runs.setdefault(pool, _Run())
        if run.task is not None and not run.task.done():
            return  # one run at a time per pool
        wanted = self._wanted(pool)
        leaving = [
            m
            for m in self.book.present()
            if m.pool == pool and (m.removing or m.name not in wanted)
        ]
        if run.applied is not None and frozenset(wanted) == run.applied and not leaving:
            return
        if not wanted and not leaving and run.applied is None:
            return  # nothing asked for and nothing made: no run needed
        if now < run.retry_at:
            return
        spec = self.pools.get(pool) or self.book.spec(pool)
        if spec is None:
            log.error("pool %s has machines but no spec to remove them with", pool)
            return
        self.book.remember(spec)
        run.task = asyncio.create_task(self._run(spec, wanted, run), name=f"pool-{pool}")

    async def _run(self, pool: PoolSpec, wanted: dict[str, NodeRequest], run: _Run) -> None:
        started = self.clock()
        for machine in self.book.present():
            if machine.name in wanted and machine.state is NodeLifecycle.REQUESTED:
                self.book.put(
                    machine.to(NodeLifecycle.PROVISIONING, f"{pool.provider} apply", started)
                )
        try:
            join = await asyncio.to_thread(self.cluster.join_info)
            result = await self.provider.apply(pool, wanted, join)
            made: dict[str, MachineInfo] | None = result.machines
        except ProviderFailed as exc:
            run.failures += 1
            wait = backoff(run.failures, RETRY_BASE, RETRY_CAP)
            run.retry_at = self.clock() + wait
            run.last_error = str(exc)
            self.events(
                "pool_apply_failed",
                f"pool {pool.name}: {pool.provider} apply failed (attempt {run.failures}), "
                f"retrying in {wait:.0f}s: {exc}",
                {"pool": pool.name, "attempt": run.failures, "error": str(exc)},
            )
            made = await self._made(pool)
        except Exception:  # a bug must not kill the tier: the run is retried like a failure
            log.exception("pool %s: provider run failed", pool.name)
            run.failures += 1
            run.retry_at = self.clock() + backoff(run.failures, RETRY_BASE, RETRY_CAP)
            made = await self._made(pool)
        else:
            run.failures = 0
            run.last_error = ""
        now = self.clock()
        # After a failure nothing is settled: the next run (after the back-off) goes ahead
        # even for the same machines, since what the provider holds may be half made
        # (Terraform keeps a resource whose creation failed, tainted, to replace it).
        run.applied = frozenset(made) if made is not None and not run.failures else None
        self._settle_machines(pool, wanted, made, now, started)

    async def _made(self, pool: PoolSpec) -> dict[str, MachineInfo] | None:
        """What the provider holds after a failed run; None when even that is unknown."""
        try:
            return dict(await self.provider.machines(pool))
        except Exception:
            log.exception("pool %s: could not read the provider's machines", pool.name)
            return None

    def _settle_machines(
        self,
        pool: PoolSpec,
        wanted: Mapping[str, NodeRequest],
        made: Mapping[str, MachineInfo] | None,
        now: float,
        started: float,
    ) -> None:
        """The book after a run: never a machine that does not exist, never one forgotten."""
        if made is None:
            return
        for machine in self.book.present():
            if machine.pool != pool.name:
                continue
            exists = machine.name in made
            if not exists and (machine.removing or machine.name not in wanted):
                took = now - started
                self.book.put(machine.to(NodeLifecycle.REMOVED, f"removed in {took:.1f}s", now))
                self._event("node_removed", f"pool {pool.name}: removed {machine.name}", machine)
            elif not exists and machine.state is NodeLifecycle.PROVISIONING:
                # Asked for, not made: back to requested, for the retry.
                self.book.put(machine.to(NodeLifecycle.REQUESTED, "the provider run failed", now))
            elif exists and machine.state is NodeLifecycle.PROVISIONING and not machine.address:
                address = made[machine.name].address
                if address:
                    self.book.put(
                        machine.to(
                            machine.state, machine.reason, machine.changed_at, address=address
                        )
                    )

    def _event(self, kind: str, message: str, machine: Machine, **data: Any) -> None:
        self.events(kind, message, {"pool": machine.pool, "node": machine.name, **data})

    # -- the stack file: nuvem plan, apply, destroy --------------------------------------------

    def set_pools(self, pools: Mapping[str, PoolSpec]) -> None:
        """Make `pools` the tier's pools (`nuvem apply`). The next steps carry it out: new
        bounds add or drain machines, a pool left out retires its machines as they empty."""
        before = set(self.pools)
        self.pools = dict(pools)
        for name in sorted(set(pools) - before):
            self.events("pool_added", f"pool {name} added", {"pool": name})
        for name in sorted(before - set(pools)):
            self.events("pool_removed", f"pool {name} removed: its machines go", {"pool": name})

    async def plan(self, pools: Mapping[str, PoolSpec]) -> list[PoolPreview]:
        """What making `pools` the tier's pools would change, pool by pool, in the
        provider's own words, and which machines failed or were lost (drift). Changes
        nothing."""
        now = self.clock()
        nodes = await self._look()
        matched = self._matched(nodes) if nodes is not None else None
        join = await asyncio.to_thread(self.cluster.join_info)
        present = self.book.present()
        previews = []
        for name in sorted(set(pools) | set(self.pools) | {m.pool for m in present}):
            live = self.pools.get(name)
            spec = pools.get(name) or live or self.book.spec(name)
            if spec is None:
                continue
            machines = [m for m in present if m.pool == name]
            wanted = target(pools.get(name), machines, self._replicas_at, now)
            if live is not None and pools.get(name) == live:
                # The spec stands: whatever the pool still has to do to reach it, the tier
                # does by itself (right after an apply, say). Under way, not a change.
                underway = await self.provider.plan(live, wanted, join)
                planned = underway
            else:
                # A pool new to the tier has nothing under way: no run was asked for.
                underway = []
                if live is not None or machines:
                    underway = await self.provider.plan(live or spec, self._wanted(name), join)
                planned = await self.provider.plan(spec, wanted, join)
            previews.append(PoolPreview(name, live, planned, underway, drift(machines, matched)))
        return previews

    async def destroy(self, name: str, progress: ProgressSink | None = None) -> None:
        """Drain every machine of pool `name` and remove them all (`nuvem destroy`); the
        pool stops being one of the tier's. Raises ProviderFailed when the provider cannot:
        the machines stay marked removing, and the tier retries their removal by itself."""
        spec = self.pools.get(name) or self.book.spec(name)
        if spec is None:
            known = ", ".join(sorted(set(self.pools) | {m.pool for m in self.book})) or "none"
            raise NotFound(f"pool {name!r} is not known (pools: {known})", "see nuvem nodes")
        self.pools.pop(name, None)
        run = self._runs.setdefault(name, _Run())
        while run.task is not None and not run.task.done():
            await asyncio.gather(run.task, return_exceptions=True)  # one run at a time
        # Held as the pool's run, so no step starts another until the machines are gone.
        run.task = asyncio.create_task(self._destroy(spec, run, progress), name=f"destroy-{name}")
        await run.task

    async def _destroy(self, spec: PoolSpec, run: _Run, progress: ProgressSink | None) -> None:
        now = self.clock()
        reason = f"pool {spec.name} is destroyed"
        for machine in [m for m in self.book.present() if m.pool == spec.name]:
            node = self._seen.get(machine.name)
            state = machine.state
            joined = state is NodeLifecycle.JOINED
            if joined and node is not None and await self._drain(machine, node, reason):
                state = NodeLifecycle.DRAINING
            self.book.put(machine.to(state, reason, now, removing=True))
        self.book.remember(spec)
        self.events("pool_destroying", f"pool {spec.name}: destroying", {"pool": spec.name})
        await self.provider.destroy(spec, progress)
        done = self.clock()
        for machine in [m for m in self.book.present() if m.pool == spec.name]:
            self.book.put(machine.to(NodeLifecycle.REMOVED, reason, done))
            self._event("node_removed", f"pool {spec.name}: removed {machine.name}", machine)
        run.applied = frozenset()
        run.failures = 0
        run.last_error = ""
        self.events("pool_destroyed", f"pool {spec.name}: destroyed", {"pool": spec.name})

    # -- views -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Every pool and its machines, for /system/pools and `nuvem nodes`."""
        pools = []
        for name in sorted(set(self.pools) | {m.pool for m in self.book}):
            spec = self.pools.get(name)
            run = self._runs.get(name, _Run())
            machines = sorted(
                (m for m in self.book if m.pool == name), key=lambda m: node_index(m.name)
            )
            pools.append(
                {
                    "name": name,
                    "module": spec.module if spec else "",
                    "min": spec.min if spec else 0,
                    "max": spec.max if spec else 0,
                    "warm": spec.warm if spec else 0,
                    "running": run.task is not None and not run.task.done(),
                    "failures": run.failures,
                    "last_error": run.last_error,
                    "machines": [m.as_dict() for m in machines],
                }
            )
        return {"pools": pools}
