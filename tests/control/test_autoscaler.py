"""The replica autoscaling policy: examples, then invariants checked with Hypothesis."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nuvem.control.autoscaler import (
    Decision,
    Load,
    ScalingContext,
    alert_target,
    decide,
    replicas_for,
)
from nuvem.stack.function import Scaling


def config(**overrides: Any) -> Scaling:
    values: dict[str, Any] = {
        "min": 1,
        "max": 10,
        "mode": "concurrency",
        "scale_down_delay_s": 30,
        "zero_after_s": 60,
        **overrides,
    }
    return Scaling.model_validate(values)


def context(
    desired: int,
    panic: Load,
    stable: Load | None = None,
    slots: int = 1,
    **overrides: Any,
) -> ScalingContext:
    values: dict[str, Any] = {
        "desired": desired,
        "ready": desired,
        "slots": slots,
        "panic": panic,
        "stable": panic if stable is None else stable,
        "idle_s": 0.0,
        "below_for_s": 1000.0,
        **overrides,
    }
    return ScalingContext(**values)


def test_a_burst_scales_up_in_one_step_to_what_the_load_needs() -> None:
    decision = decide(context(1, Load(inflight=1, queued=4.2)), config())
    assert decision.desired == 6
    assert "scale up 1 -> 6" in decision.reason


def test_scale_up_stops_at_max_and_says_so() -> None:
    decision = decide(context(2, Load(inflight=2, queued=40)), config(max=5))
    assert decision.desired == 5
    assert "capped at max 5" in decision.reason


def test_scale_down_waits_for_the_delay_then_follows_the_stable_average() -> None:
    quiet = Load(inflight=1)
    busy = Load(inflight=3)
    early = decide(context(5, quiet, busy, below_for_s=10), config())
    assert early.desired == 5
    assert "scale_down_delay_s" in early.reason
    later = decide(context(5, quiet, busy, below_for_s=31), config())
    assert later.desired == 3  # the stable average still needs three


def test_load_alone_never_goes_below_one_replica() -> None:
    decision = decide(context(3, Load(), idle_s=59), config(min=0))
    assert decision.desired == 1


def test_idle_for_zero_after_s_goes_to_zero_without_the_delay() -> None:
    decision = decide(context(2, Load(), idle_s=60, below_for_s=1), config(min=0))
    assert decision.desired == 0
    assert "idle for 60s" in decision.reason


def test_zero_after_s_is_not_stretched_by_the_stable_window() -> None:
    # One call a few seconds ago: the stable average still asks for a replica, the panic
    # window (shorter than the idle time) no longer does.
    remembered = Load(inflight=0.05, rps=0.02, latency=1.0)
    ctx = context(1, Load(), remembered, idle_s=5, below_for_s=5)
    decision = decide(ctx, config(min=0, zero_after_s=5, panic_window_s=2))
    assert decision.desired == 0
    assert "idle for 5s (zero_after_s)" in decision.reason


def test_never_to_zero_when_min_is_above_zero() -> None:
    assert decide(context(2, Load(), idle_s=10_000), config(min=1)).desired == 1


def test_at_zero_without_calls_it_stays_at_zero() -> None:
    decision = decide(context(0, Load(), ready=0, idle_s=5), config(min=0))
    assert decision == Decision(0, "at zero until a call arrives", 0)


def test_a_waiting_call_wakes_a_function_at_zero() -> None:
    # The clock did not move between samples: no rate yet, but a call is waiting.
    decision = decide(context(0, Load(), pending=1, ready=0), config(min=0, mode="rps", target=5))
    assert decision.desired == 1


def test_an_open_loop_burst_is_sized_by_arrivals_not_by_its_growing_queue() -> None:
    # 60 calls/s of 50 ms calls on one 1-slot replica: the queue grows by 40/s, but three
    # replicas' worth of calls arrive, and half a replica more clears the 20 waiting within
    # the panic window (2 s). Counting the queue as load would ask for 21.
    burst = Load(inflight=1, queued=20, rps=60, latency=0.05, growth=40)
    decision = decide(context(1, burst), config(max=30))
    assert decision.desired == 4
    assert "(+40/s)" in decision.reason


def test_a_standing_queue_of_waiting_callers_is_all_load() -> None:
    # 20 closed-loop clients on one replica: 19 always wait, arrivals equal its capacity.
    standing = Load(inflight=1, queued=19, rps=20, latency=0.05, growth=0.5)
    assert decide(context(1, standing), config(max=30)).desired == 20


def test_a_draining_queue_asks_for_no_more_replicas() -> None:
    draining = Load(inflight=4, queued=12, rps=60, latency=0.05, growth=-20)
    assert decide(context(4, draining), config()).desired == 4


def test_rps_mode_divides_the_request_rate_by_the_target() -> None:
    decision = decide(context(1, Load(rps=95)), config(mode="rps", target=20))
    assert decision.desired == 5


def test_queue_mode_adds_a_replica_per_target_waiting_calls() -> None:
    scaling = config(mode="queue", target=2)
    assert replicas_for(Load(inflight=8, queued=6), scaling, slots=4) == 5.0
    assert decide(context(2, Load(inflight=8, queued=6), slots=4), scaling).desired == 5


def test_concurrency_target_defaults_to_the_slots_per_replica() -> None:
    assert decide(context(1, Load(inflight=4, queued=8), slots=4), config()).desired == 3


def test_bounds_changed_under_the_function_are_applied() -> None:
    assert decide(context(12, Load(inflight=12)), config(max=10)).desired == 10
    assert decide(context(1, Load()), config(min=3)).desired == 3


def test_without_a_mode_the_count_is_left_alone() -> None:
    decision = decide(context(4, Load(queued=100)), config(mode=None))
    assert decision.desired == 4
    assert "autoscaling is off" in decision.reason


def test_alerts_step_up_by_a_fifth_of_max_and_resolve_to_min() -> None:
    scaling = config(min=1, max=10)
    assert alert_target(1, scaling, firing=True).desired == 3
    assert alert_target(9, scaling, firing=True).desired == 10
    assert alert_target(7, scaling, firing=False).desired == 1


def test_rps_without_a_target_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="mode rps needs a target"):
        Scaling.model_validate({"mode": "rps"})


# -- invariants -------------------------------------------------------------------------------

amounts = st.floats(min_value=0, max_value=500, allow_nan=False)
loads = st.builds(
    Load,
    inflight=amounts,
    queued=amounts,
    rps=amounts,
    latency=st.floats(min_value=0, max_value=5),
    growth=st.floats(min_value=-200, max_value=200),
)
modes = st.sampled_from(["concurrency", "rps", "queue"])


@st.composite
def configs(draw: st.DrawFn) -> Scaling:
    low = draw(st.integers(0, 5))
    high = draw(st.integers(max(low, 1), 40))
    return config(
        min=low,
        max=high,
        mode=draw(modes),
        target=draw(st.floats(min_value=0.1, max_value=50)),
        scale_down_delay_s=draw(st.sampled_from([0, 5, 30])),
        zero_after_s=draw(st.sampled_from([1, 60, 300])),
    )


contexts = st.builds(
    context,
    desired=st.integers(0, 50),
    panic=loads,
    stable=loads,
    slots=st.integers(1, 64),
    pending=st.integers(0, 100),
    idle_s=st.floats(0, 1000),
    below_for_s=st.floats(0, 1000),
)


@given(contexts, configs())
@settings(max_examples=400)
def test_never_outside_the_bounds(ctx: ScalingContext, scaling: Scaling) -> None:
    assert scaling.min <= decide(ctx, scaling).desired <= scaling.max


@given(contexts, configs())
@settings(max_examples=400)
def test_up_in_one_step_down_only_after_the_delay(ctx: ScalingContext, scaling: Scaling) -> None:
    decision = decide(ctx, scaling)
    if not scaling.min <= ctx.desired <= scaling.max:
        return
    needed = math.ceil(replicas_for(ctx.panic, scaling, ctx.slots) - 1e-9)
    if needed > ctx.desired:
        assert decision.desired == min(needed, scaling.max)
    if decision.desired < ctx.desired and decision.desired > 0:
        assert ctx.below_for_s >= scaling.scale_down_delay_s
        assert decision.desired >= needed


@given(loads, configs(), st.integers(0, 50), st.integers(1, 64), st.floats(0, 1000))
@settings(max_examples=400)
def test_no_flapping_under_constant_load(
    load: Load, scaling: Scaling, start: int, slots: int, idle: float
) -> None:
    """Whatever count it starts from (bounds included), under a constant load the policy
    moves in one direction, settles within two decisions and then holds there, however
    much time passes."""
    path = [start]
    for _ in range(2):
        ctx = context(path[-1], load, slots=slots, idle_s=idle, below_for_s=1e6)
        path.append(decide(ctx, scaling).desired)
    assert path == sorted(path) or path == sorted(path, reverse=True)
    settled = path[-1]
    for since in (0.0, 1.0, 30.0, 1e6):
        again = context(settled, load, slots=slots, idle_s=idle, below_for_s=since)
        assert decide(again, scaling).desired == settled


@given(loads, loads, configs(), st.integers(0, 50), st.integers(1, 64))
@example(  # one more queued call made a growing queue count as standing, and ask for less
    Load(queued=279, rps=1, latency=2, growth=70),
    Load(queued=1),
    Scaling(max=15, mode="concurrency", target=20),
    0,
    1,
)
@settings(max_examples=400)
def test_more_load_never_asks_for_fewer_replicas(
    low: Load, extra: Load, scaling: Scaling, desired: int, slots: int
) -> None:
    high = Load(
        low.inflight + extra.inflight,
        low.queued + extra.queued,
        low.rps + extra.rps,
        low.latency,  # with the queue's trend, what the amounts mean, not an amount
        low.growth,
    )
    lighter = decide(context(desired, low, slots=slots), scaling).desired
    heavier = decide(context(desired, high, slots=slots), scaling).desired
    assert heavier >= lighter
