"""Load windows: exact averages from the router's running totals."""

from __future__ import annotations

import asyncio

import pytest

from nuvem.control.autoscaler import Load
from nuvem.control.load_window import LoadWindow, Sample, between
from nuvem.routing.router import Router
from nuvem.runtime.protocol import CallMeta
from nuvem.runtime.replica import CallResult


def sample(
    at: float,
    arrivals: int = 0,
    inflight_s: float = 0.0,
    *,
    queued_seconds: float = 0.0,
    completed: int = 0,
    service_seconds: float = 0.0,
    inflight: int = 0,
    queued: int = 0,
) -> Sample:
    return Sample(
        at, arrivals, inflight_s, queued_seconds, completed, service_seconds, inflight, queued
    )


def test_between_two_samples_gives_exact_averages() -> None:
    a = sample(10.0, arrivals=5, inflight_s=1.0, completed=2, service_seconds=0.2)
    b = sample(
        12.0, arrivals=25, inflight_s=7.0, queued_seconds=3.0, completed=12, service_seconds=1.2
    )
    assert between(a, b) == Load(inflight=3.0, queued=1.5, rps=10.0, latency=0.1)


def test_no_time_between_samples_falls_back_to_the_moment() -> None:
    a = sample(10.0)
    assert between(a, sample(10.0, inflight=2, queued=3)) == Load(inflight=2, queued=3)


def test_peak_keeps_a_burst_that_the_average_dilutes() -> None:
    window = LoadWindow(keep=60)
    window.add(sample(0.0))
    total = 0.0
    for second in range(10):
        total += 8.0 if second == 8 else 1.0  # one busy second among quiet ones
        window.add(sample(float(second + 1), inflight_s=total))
    assert window.peak(2.0).inflight == 8.0
    assert window.average(10.0).inflight == pytest.approx(1.7)


def test_old_samples_are_dropped_but_the_window_stays_covered() -> None:
    window = LoadWindow(keep=5)
    for second in range(100):
        window.add(sample(float(second), inflight_s=float(second)))
    assert window.samples[0].at <= 99 - 5 < window.samples[1].at
    assert window.average(5).inflight == pytest.approx(1.0)


def test_idle_counts_from_the_last_activity() -> None:
    window = LoadWindow()
    window.add(sample(0.0))
    window.add(sample(1.0, arrivals=1, inflight_s=0.1))
    window.add(sample(2.0, arrivals=1, inflight_s=0.1))
    assert window.idle_for(30.0) == 29.0


def test_the_router_meters_time_in_flight_and_queued() -> None:
    now = [0.0]
    router = Router("f", max_inflight=1, max_queue=10, clock=lambda: now[0])

    class Slot:
        id = "r"
        inflight = 0

        def __init__(self) -> None:
            from nuvem.runtime.replica_state import ReplicaState

            self.state = ReplicaState.READY

        def submit(self, meta: CallMeta, body: bytes) -> asyncio.Future[CallResult]:
            raise NotImplementedError

    replica = Slot()
    router.add(replica)
    assert router.try_acquire() is replica
    now[0] = 2.0
    router.release(replica)
    now[0] = 5.0
    router.meter()
    assert router.inflight_seconds == 2.0
    assert router.busy == 0


def test_a_woken_tick_moments_after_the_last_does_not_count_as_a_burst() -> None:
    window = LoadWindow()
    window.add(sample(0.0))
    window.add(sample(1.0, inflight_s=0.5))  # half a call in flight on average
    window.add(sample(1.01, inflight_s=0.51, inflight=1))  # woken: one call, just now
    assert window.peak(2.0).inflight == pytest.approx(0.51 / 1.01)
