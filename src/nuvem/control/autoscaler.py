"""The replica autoscaling policy: a pure function from observed load to desired replicas.

Up fast, down slowly. The controller hands `decide` two views of a function's load: the
peak over the short panic window (a burst shows there within a tick or two) and the average
over the long stable window. Scaling up follows the panic view in one step, to as many
replicas as the load needs; scaling down follows the larger of both views, and only once
the load has needed fewer replicas for `scale_down_delay_s`, so the count falls as the stable
average decays instead of dropping the moment a burst pauses. Under constant load both views
agree, the count they ask for is the count held, and nothing moves: no flapping.

Zero is special: the count never falls below one by load alone; it goes to zero only when
`min` is 0 and no call has arrived or run for `zero_after_s`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nuvem.stack.function import Scaling

# Float noise must not turn exactly 2.0 replicas' worth of load into 3 replicas.
_EPSILON = 1e-9
# An alert that fires adds this share of `max` (at least one replica): OpenFaaS's default.
ALERT_STEP_FRACTION = 0.2


@dataclass(frozen=True, slots=True)
class Load:
    """A function's load over a window, summed over its replicas."""

    inflight: float = 0.0  # calls running on replicas, time-averaged
    queued: float = 0.0  # calls waiting for a free slot, time-averaged
    rps: float = 0.0  # calls arriving per second
    latency: float = 0.0  # mean service time of the calls that completed, in seconds
    growth: float = 0.0  # calls per second by which the queue grew (negative: it drained)

    @property
    def concurrency(self) -> float:
        return self.inflight + self.queued

    def queue_standing(self) -> bool:
        """The queue holds steady: the same callers keep waiting (closed-loop clients), so
        every queued call is load. A growing queue measures how long a burst has lasted and
        a draining one a burst already met; neither says how much load there is."""
        return abs(self.growth) <= max(1.0, 0.25 * self.queued)

    def demand(self, drain_s: float) -> float:
        """Calls the function would have in flight if nothing had to wait: those running and
        those in a standing queue; while the queue grows or drains instead, arrivals times
        service time (Little's law without the queue's wait) plus what clears the backlog
        within `drain_s`. That sizes an open-loop burst by its rate, not by its queue, which
        grows for as long as the burst has lasted."""
        if self.latency <= 0:
            return self.concurrency  # nothing completed yet: no service time to go by
        backlog = min(self.queued, self.queued * self.latency / drain_s)
        moving = max(self.inflight, self.rps * self.latency + backlog)
        # A standing queue counts whole, and never for less than the same queue would if it
        # moved: one more queued call must not tip it into standing and ask for fewer.
        return max(self.concurrency, moving) if self.queue_standing() else moving

    def describe(self) -> str:
        trend = "" if self.queue_standing() else f" ({self.growth:+.0f}/s)"
        return (
            f"{self.inflight:.1f} in flight, {self.queued:.1f} queued{trend}, "
            f"{self.rps:.1f} req/s, {self.latency * 1000:.0f} ms"
        )


@dataclass(frozen=True, slots=True)
class ScalingContext:
    """Everything `decide` looks at; the controller builds it each tick."""

    desired: int  # the replica count the controller holds now
    ready: int  # replicas serving calls
    slots: int  # calls one replica runs at once (the function's max_inflight)
    panic: Load  # the peak load over the panic window
    stable: Load  # the average load over the stable window
    pending: int = 0  # calls waiting at this moment
    idle_s: float = 0.0  # seconds since a call last arrived or ran
    # Seconds the load has needed fewer replicas than `desired` (since the count last
    # changed, at most): scale-down waits for scale_down_delay_s of it.
    below_for_s: float = math.inf


@dataclass(frozen=True, slots=True)
class Decision:
    desired: int
    reason: str
    needed: int | None = None  # what the load alone asks for, when the policy looked at it


def target_of(config: Scaling, slots: int) -> float:
    """The load one replica should carry, in the unit of the mode."""
    if config.target is not None:
        return config.target
    if config.mode == "queue":
        return 1.0
    return float(slots)


def replicas_for(load: Load, config: Scaling, slots: int) -> float:
    """How many replicas `load` keeps busy at the target, as a real number."""
    target = target_of(config, slots)
    if config.mode == "rps":
        return load.rps / target
    if config.mode == "queue":
        # Running calls fill replicas at their slot count; every `target` waiting calls
        # ask for one replica more.
        return load.inflight / slots + load.queued / target
    return load.demand(config.panic_window_s) / target


def _whole(replicas: float) -> int:
    return max(0, math.ceil(replicas - _EPSILON))


def decide(ctx: ScalingContext, config: Scaling) -> Decision:
    """The replica count the function should have now, and why."""
    low, high = config.min, config.max
    current = ctx.desired
    if config.mode is None:
        bounded = min(max(current, low), high)
        return Decision(bounded, "autoscaling is off (scaling.mode is unset)")
    burst = _whole(replicas_for(ctx.panic, config, ctx.slots))
    steady = _whole(replicas_for(ctx.stable, config, ctx.slots))
    if ctx.pending > 0 and ctx.ready == 0:
        burst = max(burst, 1)  # a call is waiting for a replica that does not exist yet
    if current < low:
        return Decision(max(low, min(burst, high)), f"below min {low}")
    if current > high:
        return Decision(high, f"above max {high}")
    if burst > current and current < high:
        wanted = min(burst, high)
        capped = f" (capped at max {high})" if burst > high else ""
        return Decision(
            wanted,
            f"scale up {current} -> {wanted}{capped}: {ctx.panic.describe()} over the "
            f"panic window needs {burst}",
            burst,
        )
    idle_long = low == 0 and ctx.idle_s >= config.zero_after_s and ctx.pending == 0
    # After zero_after_s without a call the stable average still remembers the calls before
    # (for up to stable_window_s): zero_after_s alone is the documented rule for zero.
    needed = burst if idle_long else max(burst, steady, max(low, 1))
    if current == 0:
        return Decision(0, "at zero until a call arrives", burst)
    if needed >= current:
        return Decision(current, f"hold at {current}: {ctx.stable.describe()} on average", needed)
    if needed == 0:
        return Decision(
            0, f"scale to zero from {current}: idle for {ctx.idle_s:.0f}s (zero_after_s)", 0
        )
    if ctx.below_for_s < config.scale_down_delay_s:
        return Decision(
            current,
            f"hold at {current}: the load needs {needed}, for {ctx.below_for_s:.0f}s so far "
            f"(scale_down_delay_s {config.scale_down_delay_s:g})",
            needed,
        )
    return Decision(
        needed,
        f"scale down {current} -> {needed}: {ctx.stable.describe()} over the stable window",
        needed,
    )


def alert_target(current: int, config: Scaling, firing: bool) -> Decision:
    """Alert-driven scaling as OpenFaaS does it: a firing alert adds a step of replicas
    (a fifth of max, at least one), a resolved one returns the function to min."""
    if not firing:
        return Decision(config.min, f"alert resolved: back to min {config.min}")
    step = max(1, math.ceil(config.max * ALERT_STEP_FRACTION))
    wanted = min(config.max, max(current, config.min) + step)
    return Decision(wanted, f"alert firing: {current} + {step} -> {wanted} (max {config.max})")
