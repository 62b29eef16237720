"""The reconcile loop: keeps every function's live replicas equal to its desired ones.

The controller coordinates; it decides little itself. Each tick, per function: the
autoscaler (`autoscaler.decide`) may change the desired count, `replica_plan.plan` says
what to start and retire, the `Watchdog` kills runaway replicas and `MetricsExport` sets
the gauges. The controller carries out the plan through the `Runtime` and records each
outcome on the `Deployment` by its named transitions.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from nuvem.cluster.placement import demand_of
from nuvem.control.autoscaler import decide
from nuvem.control.deployment import Deployment
from nuvem.control.metrics_export import MetricsExport
from nuvem.control.node_plan import Need
from nuvem.control.node_tier import NodeTier
from nuvem.control.replica_plan import plan
from nuvem.control.watchdog import Watchdog
from nuvem.errors import Conflict, NotFound, NuvemError, Unavailable
from nuvem.metrics.registry import Metrics
from nuvem.routing.router import Router
from nuvem.runtime.environment import Environment
from nuvem.runtime.logbook import LogBook
from nuvem.runtime.replica import Pending, Replica, Runtime
from nuvem.runtime.replica_state import ReplicaState
from nuvem.stack.function import FunctionSpec
from nuvem.stores.records import RecordStore

log = logging.getLogger(__name__)

DRAIN_GRACE = 30.0


class Environments(Protocol):
    async def ensure(self, spec: FunctionSpec) -> Environment: ...


class Controller:
    def __init__(
        self,
        records: RecordStore,
        runtime: Runtime,
        environments: Environments,
        logbook: LogBook,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        tick_interval: float = 1.0,
        leaving: Callable[[], frozenset[str]] | None = None,
        node_tier: NodeTier | None = None,
        prepare: Callable[[FunctionSpec], Awaitable[object]] | None = None,
    ) -> None:
        self.records = records
        # The second tier: machines added and removed as replicas need them. None: the
        # cluster has no pools (or there is no cluster).
        self.node_tier = node_tier
        # The nodes draining now (asked of the cluster engine, blocking): replicas there
        # move to other nodes. None: one machine, nothing ever leaves.
        self.leaving = leaving
        self._leaving: frozenset[str] = frozenset()
        self.runtime = runtime
        self.environments = environments
        # What a deploy makes ready ahead of any replica (a `build:` function's image), so
        # a function deployed at zero replicas does not make its first call wait for it.
        self.prepare = prepare
        self.logbook = logbook
        self.metrics = metrics
        self.clock = clock
        self.tick_interval = tick_interval
        self.watchdog = Watchdog()
        self.export = MetricsExport(metrics)
        self.deployments: dict[str, Deployment] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()  # starts and retirements under way
        self._watchers: set[asyncio.Task[None]] = set()  # one per replica: waits for its end
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Bring back every function on record and start the reconcile loop."""
        for record in self.records.list_functions():
            self._install(record.spec, record.replicas)
        await self.tick()
        self._loop_task = asyncio.create_task(self._run(), name="controller")

    async def _run(self) -> None:
        while not self._stopping:
            # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancellation
            # that races with the event, which would keep this loop alive through shutdown.
            try:
                async with asyncio.timeout(self.tick_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if not self._stopping:
                await self.tick()

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, grace: float = DRAIN_GRACE) -> None:
        """Drain every replica (calls in flight finish) and stop them."""
        self._stopping = True
        if self._loop_task is not None:
            self.wake()
            await self._loop_task
        for deployment in self.deployments.values():
            deployment.remove()
        starting = list(self._tasks)
        for task in starting:
            task.cancel()
        await asyncio.gather(*starting, return_exceptions=True)
        replicas = [r for d in self.deployments.values() for r in d.replicas]
        await asyncio.gather(*(r.drain_and_stop(grace) for r in replicas), return_exceptions=True)
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        if self.node_tier is not None:
            await self.node_tier.close()
        # A runtime may hold processes of its own (the local one: pre-started workers).
        await self.runtime.close()

    def abort(self, reason: str) -> None:
        """Stop at once (a second Ctrl-C): calls waiting and in flight fail now with 503
        and `reason`, every replica is killed and starts under way are cancelled. `stop()`
        still runs afterwards and finds nothing left to drain."""
        self._stopping = True
        error = Unavailable(reason, "retry once nuvem is back")
        for deployment in self.deployments.values():
            deployment.remove(error)
            for replica in deployment.replicas:
                replica.kill(reason)
        for task in list(self._tasks):
            task.cancel()
        self.wake()

    async def settle(self) -> None:
        """Wait until the starts and retirements under way have finished, and those they
        led to (tests step the loop with `tick()` and this)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- commands --------------------------------------------------------------------------

    def get(self, name: str) -> Deployment:
        deployment = self.deployments.get(name)
        if deployment is None:
            known = ", ".join(sorted(self.deployments)) or "none"
            raise NotFound(
                f"function {name!r} is not deployed (deployed: {known})",
                "deploy it with `nuvem deploy -f nuvem.yaml`",
            )
        return deployment

    def deploy(self, spec: FunctionSpec) -> Deployment:
        """Create or update a function. A changed spec rolls replicas over without downtime."""
        existing = self.deployments.get(spec.name)
        if existing is not None and existing.spec == spec:
            # Nothing to roll over and nothing to record; a start given up on for good
            # (requirements the index lacks) is tried again, as a deploy asks.
            existing.respec(spec, existing.desired)
            self.wake()
            return existing
        if existing is None:
            # An autoscaled function starts one replica even with min 0, so a deploy proves
            # its handler loads; it goes to zero once idle for zero_after_s.
            autoscaled = spec.scaling.mode is not None
            replicas = max(spec.scaling.min, 1) if autoscaled else spec.scaling.min
        else:
            replicas = min(max(existing.desired, spec.scaling.min), spec.scaling.max)
        self.records.put_function(spec, replicas)
        deployment = self._install(spec, replicas)
        if replicas == 0 and self.prepare is not None:
            self._spawn(self._prepare(spec))
        verb = "updated" if existing is not None else "deployed"
        self.event(
            "deployed",
            spec.name,
            f"{verb} {spec.name} ({spec.image_ref or spec.handler}), {replicas} replicas",
        )
        self.wake()
        return deployment

    def _install(self, spec: FunctionSpec, replicas: int) -> Deployment:
        deployment = self.deployments.get(spec.name)
        if deployment is None:
            router = Router(spec.name, spec.max_inflight, spec.max_queue, self.clock)
            deployment = Deployment(spec, replicas, router, now=self.clock())
            router.on_starved = functools.partial(self._starved, deployment)
            router.on_cold_call = self.metrics.cold_start.labels(spec.name).observe
            self.deployments[spec.name] = deployment
        else:
            deployment.respec(spec, replicas)
        return deployment

    async def remove(self, name: str) -> None:
        deployment = self.get(name)
        deployment.remove(NotFound(f"function {name!r} was removed"))
        del self.deployments[name]
        self.records.delete_function(name)
        self.event("removed", name, f"removed {name}")
        await asyncio.gather(
            *(r.drain_and_stop(DRAIN_GRACE) for r in deployment.replicas), return_exceptions=True
        )
        self.export.forget(name)

    def scale(self, name: str, replicas: int) -> Deployment:
        deployment = self.get(name)
        scaling = deployment.spec.scaling
        if not scaling.min <= replicas <= scaling.max:
            # A well-formed request the function's current bounds refuse: a conflict.
            raise Conflict(
                f"cannot scale {name!r} to {replicas} replicas: its scaling bounds are "
                f"min {scaling.min}, max {scaling.max}",
                "choose a count within the bounds, or change scaling in the stack file",
            )
        previous = deployment.desired
        message = f"scaled {name} from {previous} to {replicas} replicas (manual)"
        self.set_desired(deployment, replicas, "scaled", "manual (nuvem scale)", message)
        return deployment

    def set_desired(
        self,
        deployment: Deployment,
        replicas: int,
        kind: str,
        reason: str,
        message: str | None = None,
    ) -> None:
        """Change a function's desired count (autoscaler, `nuvem scale`, alerts) and say why:
        an event of `kind` whose data holds from, to and the reason."""
        previous = deployment.desired
        deployment.set_desired(replicas, self.clock())
        self.records.set_replicas(deployment.name, replicas)
        direction = "up" if replicas > previous else "down" if replicas < previous else "same"
        self.metrics.scaling_decisions.labels(deployment.name, kind, direction).inc()
        data = {"from": previous, "to": replicas, "reason": reason}
        self.event(kind, deployment.name, message or f"{deployment.name}: {reason}", data)
        self.wake()

    def _starved(self, deployment: Deployment) -> None:
        # A call waits and no replica is ready: an autoscaled function at zero wakes now.
        if deployment.spec.scaling.mode is not None and not deployment.removed:
            self.wake()

    def event(
        self, kind: str, function: str | None, message: str, data: dict[str, Any] | None = None
    ) -> None:
        self.records.add_event(kind, function, message, data)
        if function is not None:
            self.logbook.write(function, "controller", "system", message)
        log.info("%s", message)

    # -- reconcile -------------------------------------------------------------------------

    async def tick(self) -> None:
        """One reconcile step over every function; a failing function does not stop others."""
        began = time.perf_counter()
        leaving = await self._leaving_nodes()
        needs: list[Need] = []
        for deployment in list(self.deployments.values()):
            try:
                deployment.report_leaving(leaving)
                pending = self.runtime.pending(deployment.name)
                deployment.report_pending(pending)
                needs += _needs(deployment.spec, pending)
                self._autoscale(deployment)
                self._reconcile(deployment)
                self.watchdog.check(deployment)
            except Exception:  # isolate: one function's failure must not stall the rest
                log.exception("reconciling %s failed", deployment.name)
            self.export.export(deployment)
        if self.node_tier is not None:
            await self._step_nodes(self.node_tier, needs)
        self.metrics.reconcile_seconds.observe(time.perf_counter() - began)

    async def _step_nodes(self, tier: NodeTier, needs: list[Need]) -> None:
        replicas_at = Counter(
            replica.node
            for deployment in self.deployments.values()
            for replica in deployment.replicas
            if replica.state is not ReplicaState.DEAD
        )
        try:
            await tier.step(needs, replicas_at)
        except Exception:  # isolate: the replica tier goes on whatever the machines do
            log.exception("the node tier failed")

    def pool_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        """The node tier's decisions, as events of no function."""
        self.event(kind, None, message, data)

    async def _leaving_nodes(self) -> frozenset[str]:
        if self.leaving is None:
            return frozenset()
        try:
            async with asyncio.timeout(2.0):
                self._leaving = await asyncio.to_thread(self.leaving)
        except Exception:  # the head is slow or away: go on with what was known
            log.warning("could not ask the cluster which nodes are leaving", exc_info=True)
        return self._leaving

    def _autoscale(self, deployment: Deployment) -> None:
        now = self.clock()
        deployment.sample_load(now)
        scaling = deployment.spec.scaling
        if scaling.mode is None:
            return
        decision = decide(deployment.scaling_context(now), scaling)
        deployment.decided(decision, now)
        if decision.desired != deployment.desired:
            self.set_desired(deployment, decision.desired, "autoscaled", decision.reason)

    def _reconcile(self, deployment: Deployment) -> None:
        decided = plan(deployment.view(self.clock()))
        for retirement in decided.retire:
            replica = deployment.retire(retirement.replica)
            self._spawn(self._retire(deployment, replica, retirement.reason))
        for _ in range(decided.start):
            # Counted now, not when the task first runs: a tick right after this one
            # (a woken loop does not yield in between) must not start them again.
            deployment.start_requested()
            self._spawn(self._start_replica(deployment))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _prepare(self, spec: FunctionSpec) -> None:
        """Ready what `spec`'s first start needs; a failure is an event now, and the start
        that needs it fails the same way (and is shown as any failed start is)."""
        assert self.prepare is not None
        try:
            await self.prepare(spec)
        except NuvemError as exc:
            self.event("prepare_failed", spec.name, f"{spec.name} is not ready to start: {exc}")

    async def _start_replica(self, deployment: Deployment) -> None:
        """Start one replica; the caller has counted it with `start_requested`."""
        spec = deployment.spec
        replica_id = f"{spec.name}-{next(self._ids)}"
        try:
            env = await self.environments.ensure(spec)
            began = time.perf_counter()
            replica = await self.runtime.start(spec, env, replica_id)
            elapsed = time.perf_counter() - began
            self.metrics.replica_start_seconds.labels(spec.name).observe(elapsed)
        except NuvemError as exc:
            deployment.start_failed(exc, self.clock())
            self.event("replica_failed", spec.name, f"replica {replica_id} failed to start: {exc}")
            return
        except BaseException:
            deployment.start_abandoned()
            raise
        if not deployment.started(replica):  # removed meanwhile
            await replica.drain_and_stop(0)
            return
        watcher = asyncio.create_task(self._watch_exit(deployment, replica))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        self.wake()

    async def _watch_exit(self, deployment: Deployment, replica: Replica) -> None:
        await replica.wait_dead()
        if deployment.replica_exited(replica):
            cause = replica.exit_cause or "unknown"
            self.metrics.restarts.labels(deployment.name, cause.split(" (")[0]).inc()
            self.event(
                "replica_died",
                deployment.name,
                f"replica {replica.id} (pid {replica.pid}) {cause}; replacing it",
            )
        self.wake()

    async def _retire(self, deployment: Deployment, replica: Replica, reason: str) -> None:
        self.logbook.write(deployment.name, replica.id, "system", f"draining: {reason}")
        await replica.drain_and_stop(DRAIN_GRACE)


def _needs(spec: FunctionSpec, pending: list[Pending]) -> list[Need]:
    """The replicas of `spec` that wait for room, as the node tier weighs them."""
    demand = demand_of(spec)
    return [
        Need(p.replica_id, spec.name, demand.cpu, demand.gpu, demand.memory, demand.labels)
        for p in pending
    ]
