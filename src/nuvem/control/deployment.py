"""`Deployment`: one function as the controller runs it, and the transitions of its state.

Its fields are read by many (the gateway's status pages, the job runner, tests) and
written only by the methods below, each named after what happened: a start was
requested, a replica started, a start failed, a replica exited, the spec changed, the
desired count changed, the function was removed, a call arrived. The rules that tie the
fields together (the back-off after failed starts, when the last error is forgotten)
live here and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from nuvem.backoff import backoff
from nuvem.control.autoscaler import Decision, ScalingContext
from nuvem.control.load_window import LoadWindow, Sample
from nuvem.control.replica_plan import DeploymentView, ReplicaView
from nuvem.errors import ImageBuildFailed, NuvemError, RequirementsUnresolvable, Unavailable
from nuvem.routing.router import Router
from nuvem.runtime.replica import Pending, Replica
from nuvem.runtime.replica_state import ReplicaState
from nuvem.stack.function import FunctionSpec

START_BACKOFF = 0.5  # seconds after the first failed start; doubles per failure
MAX_START_BACKOFF = 30.0
_LIVE = (ReplicaState.STARTING, ReplicaState.READY)
PENDING = "pending"  # a count, not a ReplicaState: no replica exists before it is placed


def start_backoff(failures: int) -> float:
    """Seconds to wait before the next start after `failures` consecutive failed ones."""
    return backoff(failures, START_BACKOFF, MAX_START_BACKOFF)


class Deployment:
    def __init__(
        self, spec: FunctionSpec, desired: int, router: Router, *, now: float = 0.0
    ) -> None:
        self.router = router
        self._spec = spec
        self._desired = desired
        self._replicas: list[Replica] = []  # every replica not yet dead
        self._retiring: set[str] = set()  # ids of replicas told to drain, not yet dead
        self._starting = 0  # start attempts in progress (environment build included)
        self._failures = 0  # consecutive failed starts, for back-off
        self._retry_at = 0.0
        self._last_error: str | None = None
        self._removal: NuvemError | None = None  # why it was removed, when it says
        self._last_failure: NuvemError | None = None  # the start failure _last_error shows
        self._invocations = 0
        self._progress: str | None = None  # what a start in progress is doing (env build)
        self._pending: tuple[Pending, ...] = ()  # starts no node has room for yet
        self._leaving: frozenset[str] = frozenset()  # nodes draining: replicas move off
        self._removed = False
        self._load = LoadWindow()
        self._changed_at = now  # when `desired` last changed, by whatever means
        self._needed_at = 0.0  # when the load last needed `desired` replicas (or more)
        self._decision: Decision | None = None  # the autoscaler's latest, for `nuvem top`

    # -- what it is ------------------------------------------------------------------------

    @property
    def spec(self) -> FunctionSpec:
        return self._spec

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def timeout(self) -> float:
        return self._spec.timeout

    @property
    def idempotent(self) -> bool:
        return self._spec.idempotent

    @property
    def desired(self) -> int:
        return self._desired

    @property
    def replicas(self) -> Sequence[Replica]:
        return self._replicas

    @property
    def starting(self) -> int:
        return self._starting

    @property
    def failures(self) -> int:
        return self._failures

    @property
    def retry_at(self) -> float:
        return self._retry_at

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @property
    def invocations(self) -> int:
        return self._invocations

    @property
    def progress(self) -> str | None:
        return self._progress

    @property
    def pending(self) -> tuple[Pending, ...]:
        return self._pending

    @property
    def removed(self) -> bool:
        return self._removed

    @property
    def load(self) -> LoadWindow:
        return self._load

    @property
    def changed_at(self) -> float:
        return self._changed_at

    @property
    def needed_at(self) -> float:
        return self._needed_at

    @property
    def decision(self) -> Decision | None:
        return self._decision

    # -- transitions -----------------------------------------------------------------------

    def start_requested(self) -> None:
        """A start was decided; counted at once, so the next tick does not start it again."""
        self._starting += 1

    def start_abandoned(self) -> None:
        """A start in progress was cancelled (shutdown): neither success nor failure."""
        self._starting -= 1

    def started(self, replica: Replica) -> bool:
        """A start succeeded: the replica takes calls, the failures are forgotten. False
        when the function was removed meanwhile: then the caller stops the replica."""
        self._starting -= 1
        if self._removed:
            return False
        self._failures = 0
        self._last_error = None
        self._replicas.append(replica)
        self.router.add(replica)
        return True

    def start_failed(self, error: NuvemError, now: float) -> None:
        """A start failed: back off before the next, and fail the waiting calls when
        nothing else can serve them."""
        self._starting -= 1
        self._failures += 1
        self._retry_at = now + start_backoff(self._failures)
        if isinstance(error, RequirementsUnresolvable | ImageBuildFailed):
            self._retry_at = math.inf  # until a deploy (respec) asks again
        self._last_error = str(error)
        self._last_failure = error
        if self.unavailable_reason() is not None:
            self.router.fail_waiters(error)

    def report_progress(self, progress: str) -> None:
        """What the start in progress is doing (an environment build), for `nuvem deploy`."""
        self._progress = progress

    def report_leaving(self, nodes: frozenset[str]) -> None:
        """The nodes that are draining (each tick): replicas there are replaced elsewhere
        and retired once the replacements are ready."""
        self._leaving = nodes

    def report_pending(self, pending: Sequence[Pending]) -> None:
        """The starts in progress that wait for room on the cluster, and why (each tick)."""
        self._pending = tuple(pending)

    def retire(self, replica_id: str) -> Replica:
        """The replica is to drain: the next plans leave it out. Returns it."""
        self._retiring.add(replica_id)
        return next(r for r in self._replicas if r.id == replica_id)

    def replica_exited(self, replica: Replica) -> bool:
        """A replica died: it leaves the router. True when that was a failure (it was
        neither retired nor the function removed), so it is to be reported and replaced."""
        self.router.remove(replica)
        if replica in self._replicas:
            self._replicas.remove(replica)
        self._retiring.discard(replica.id)
        return not replica.retired and not self._removed

    def respec(self, spec: FunctionSpec, desired: int) -> None:
        """A deploy of this function: a changed spec starts with a clean slate (its
        replicas roll over; past failures and their back-off no longer count)."""
        # A deploy of the same spec retries a start that was given up on for good: the
        # user may have published the missing package meanwhile.
        if self._spec.fingerprint() != spec.fingerprint() or math.isinf(self._retry_at):
            self._failures = 0
            self._retry_at = 0.0
            self._last_error = None
        self._spec = spec
        self._desired = desired
        self.router.configure(spec.max_inflight, spec.max_queue)

    def set_desired(self, desired: int, now: float) -> None:
        self._desired = desired
        self._changed_at = now

    def decided(self, decision: Decision, now: float) -> None:
        """The autoscaler's verdict of this tick (it may leave `desired` as it is)."""
        self._decision = decision
        if decision.needed is None or decision.needed >= self._desired:
            self._needed_at = now

    def remove(self, error: NuvemError | None = None) -> None:
        """The function is gone (or the platform stops): calls fail at once from now on,
        and those waiting fail with `error`."""
        self._removed = True
        if error is not None:
            self._removal = error
            self.router.fail_waiters(error)

    def count_call(self) -> None:
        self._invocations += 1

    # -- views -----------------------------------------------------------------------------

    def ready(self) -> list[Replica]:
        return [r for r in self._replicas if r.state is ReplicaState.READY]

    def current(self) -> list[Replica]:
        """Replicas started from the present spec, not draining."""
        fingerprint = self._spec.fingerprint()
        return [r for r in self._replicas if r.fingerprint == fingerprint and r.state in _LIVE]

    def current_ready(self) -> list[Replica]:
        """Ready replicas of the present spec: after an update, the new ones only."""
        return [r for r in self.current() if r.state is ReplicaState.READY]

    def outdated(self) -> list[Replica]:
        fingerprint = self._spec.fingerprint()
        return [r for r in self._replicas if r.fingerprint != fingerprint and r.state in _LIVE]

    def view(self, now: float) -> DeploymentView:
        """The snapshot `replica_plan.plan` decides on."""
        fingerprint = self._spec.fingerprint()
        live = tuple(
            ReplicaView(
                r.id,
                r.fingerprint == fingerprint and r.node not in self._leaving,
                r.state is ReplicaState.READY,
                r.inflight,
                moving=r.node in self._leaving,
            )
            for r in self._replicas
            if r.state in _LIVE and r.id not in self._retiring
        )
        # An update starts the whole new set beside the old one, which goes as it is ready.
        surge = max(1, self._desired)
        return DeploymentView(self._desired, live, self._starting, self._retry_at, now, surge)

    def unavailable_reason(self) -> str | None:
        """Why calls should fail at once instead of waiting; None while they can wait."""
        if self._removed:
            if self._removal is not None:
                return self._removal.message
            return f"function {self.name!r} was removed"
        if self.ready() or self._starting:
            return None
        if self._last_error is not None:
            return self._last_error
        if self._desired == 0 and self._spec.scaling.mode is None:
            # Autoscaled functions wake from zero for the call instead (it waits meanwhile).
            return (
                f"function {self.name!r} is scaled to zero replicas and autoscaling is off; "
                f"scale it up with `nuvem scale {self.name} 1`, or set scaling.mode"
            )
        return None

    def unavailable_error(self) -> Unavailable | None:
        """The 503 a call gets when it cannot wait (see `unavailable_reason`), with one hint:
        the failure's own when it has one (a model's missing weights say what to do)."""
        reason = self.unavailable_reason()
        if reason is None:
            return None
        if self._removed:
            return Unavailable(reason, "retry once nuvem serves it again")
        failure = self._last_failure
        if failure is not None and reason == self._last_error:
            hint = failure.hint or f"fix it and deploy again; see nuvem logs {self.name}"
            return Unavailable(failure.message, hint)
        return Unavailable(reason)

    def sample_load(self, now: float) -> None:
        """Read the router's meter into the load window (once per controller tick)."""
        router = self.router
        router.meter()
        self._load.keep = self._spec.scaling.stable_window_s + 2.0
        self._load.add(
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
        scaling = self._spec.scaling
        return ScalingContext(
            desired=self._desired,
            ready=len(self.ready()),
            slots=self._spec.max_inflight,
            panic=self._load.peak(scaling.panic_window_s),
            stable=self._load.average(scaling.stable_window_s),
            pending=self.router.queued,
            idle_s=self._load.idle_for(now),
            below_for_s=now - max(self._changed_at, self._needed_at),
        )

    def state_counts(self) -> dict[str, int]:
        """Replicas by state; `pending` are starts that no node has room for yet."""
        counts = {state.value: 0 for state in ReplicaState}
        pending = min(len(self._pending), self._starting)
        counts[PENDING] = pending
        counts[ReplicaState.STARTING.value] += self._starting - pending
        for replica in self._replicas:
            counts[replica.state.value] += 1
        return counts
