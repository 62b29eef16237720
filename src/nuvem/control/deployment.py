"""One function as the controller runs it: its spec, desired count, replicas and router."""

from __future__ import annotations

from dataclasses import dataclass, field

from nuvem.control.autoscaler import Decision, ScalingContext
from nuvem.control.load_window import LoadWindow, Sample
from nuvem.routing.router import Router
from nuvem.runtime.replica import Replica
from nuvem.runtime.replica_state import ReplicaState
from nuvem.stack.function import FunctionSpec


@dataclass(eq=False)
class Deployment:
    spec: FunctionSpec
    desired: int
    router: Router
    replicas: list[Replica] = field(default_factory=list)  # every replica not yet dead
    starting: int = 0  # start attempts in progress (environment build included)
    failures: int = 0  # consecutive failed starts, for back-off
    retry_at: float = 0.0
    last_error: str | None = None
    invocations: int = 0
    progress: str | None = None  # what a start in progress is doing (environment build)
    removed: bool = False
    load: LoadWindow = field(default_factory=LoadWindow)
    changed_at: float = 0.0  # when `desired` last changed, by whatever means
    needed_at: float = 0.0  # when the load last needed `desired` replicas (or more)
    decision: Decision | None = None  # the autoscaler's latest, shown by `nuvem top`

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def timeout(self) -> float:
        return self.spec.timeout

    @property
    def idempotent(self) -> bool:
        return self.spec.idempotent

    def ready(self) -> list[Replica]:
        return [r for r in self.replicas if r.state is ReplicaState.READY]

    def current(self) -> list[Replica]:
        """Replicas started from the present spec, not draining."""
        fingerprint = self.spec.fingerprint()
        return [
            r
            for r in self.replicas
            if r.fingerprint == fingerprint
            and r.state in (ReplicaState.STARTING, ReplicaState.READY)
        ]

    def outdated(self) -> list[Replica]:
        fingerprint = self.spec.fingerprint()
        return [
            r
            for r in self.replicas
            if r.fingerprint != fingerprint
            and r.state in (ReplicaState.STARTING, ReplicaState.READY)
        ]

    def unavailable_reason(self) -> str | None:
        """Why calls should fail at once instead of waiting; None while they can wait."""
        if self.removed:
            return f"function {self.name!r} was removed"
        if self.ready() or self.starting:
            return None
        if self.last_error is not None:
            return self.last_error
        if self.desired == 0 and self.spec.scaling.mode is None:
            # Autoscaled functions wake from zero for the call instead (it waits meanwhile).
            return (
                f"function {self.name!r} is scaled to zero replicas and autoscaling is off; "
                f"scale it up with `nuvem scale {self.name} 1`, or set scaling.mode"
            )
        return None

    def sample_load(self, now: float) -> None:
        """Read the router's meter into the load window (once per controller tick)."""
        router = self.router
        router.meter()
        self.load.keep = self.spec.scaling.stable_window_s + 2.0
        self.load.add(
            Sample(
                at=now,
                arrivals=router.arrivals,
                inflight_seconds=router.inflight_seconds,
                queued_seconds=router.queued_seconds,
                completed=router.completed,
                service_seconds=router.service_seconds,
                inflight=router.busy,
                queued=router.queued,
            )
        )

    def scaling_context(self, now: float) -> ScalingContext:
        scaling = self.spec.scaling
        return ScalingContext(
            desired=self.desired,
            ready=len(self.ready()),
            slots=self.spec.max_inflight,
            panic=self.load.peak(scaling.panic_window_s),
            stable=self.load.average(scaling.stable_window_s),
            pending=self.router.queued,
            idle_s=self.load.idle_for(now),
            below_for_s=now - max(self.changed_at, self.needed_at),
        )

    def state_counts(self) -> dict[str, int]:
        counts = {state.value: 0 for state in ReplicaState}
        counts[ReplicaState.STARTING.value] += self.starting
        for replica in self.replicas:
            counts[replica.state.value] += 1
        return counts
