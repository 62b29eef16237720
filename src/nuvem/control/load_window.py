"""A function's recent load: the controller samples its router's meter each tick into here.

The router keeps running totals (calls arrived, the time-integral of calls in flight and
queued, calls completed and their service time). Differences between two samples give exact
averages over the time between them, however many calls came and went in between, so a
once-a-second sample misses no burst.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from nuvem.control.autoscaler import Load


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    arrivals: int  # calls arrived since the router was made
    inflight_seconds: float  # integral of calls in flight over time
    queued_seconds: float  # integral of calls waiting over time
    completed: int
    service_seconds: float  # sum of the completed calls' service times
    inflight: int  # at this moment
    queued: int  # at this moment


def between(a: Sample, b: Sample) -> Load:
    """The load from sample `a` to the later sample `b`."""
    elapsed = b.at - a.at
    if elapsed <= 0:
        return Load(inflight=float(b.inflight), queued=float(b.queued))
    done = b.completed - a.completed
    return Load(
        inflight=(b.inflight_seconds - a.inflight_seconds) / elapsed,
        queued=(b.queued_seconds - a.queued_seconds) / elapsed,
        rps=(b.arrivals - a.arrivals) / elapsed,
        latency=(b.service_seconds - a.service_seconds) / done if done > 0 else 0.0,
        growth=(b.queued - a.queued) / elapsed,
    )


def _busy(a: Sample, b: Sample) -> bool:
    return (
        b.arrivals > a.arrivals
        or b.inflight_seconds > a.inflight_seconds
        or b.queued_seconds > a.queued_seconds
        or b.inflight > 0
        or b.queued > 0
    )


class LoadWindow:
    """Samples of one function's meter over the last `keep` seconds."""

    def __init__(self, keep: float = 60.0) -> None:
        self.keep = keep
        self.samples: deque[Sample] = deque()
        self.last_active: float | None = None  # when a call last arrived or ran

    def add(self, sample: Sample) -> None:
        if self.samples and _busy(self.samples[-1], sample):
            self.last_active = sample.at
        elif self.last_active is None:
            self.last_active = sample.at  # a new function counts as active when first seen
        self.samples.append(sample)
        # Keep one sample at or before the window's start, so averages cover all of it.
        while len(self.samples) > 2 and self.samples[1].at <= sample.at - self.keep:
            self.samples.popleft()

    def latest(self) -> Load:
        if not self.samples:
            return Load()
        if len(self.samples) == 1:
            return between(self.samples[0], self.samples[0])
        return between(self.samples[-2], self.samples[-1])

    def average(self, span: float) -> Load:
        """The average load over the last `span` seconds (or as much of it as was seen)."""
        if not self.samples:
            return Load()
        last = self.samples[-1]
        first = self.samples[0]
        for sample in reversed(self.samples):
            first = sample
            if sample.at <= last.at - span:
                break
        return between(first, last)

    def peak(self, span: float, resolution: float = 1.0) -> Load:
        """The busiest stretch of about `resolution` seconds in the last `span` seconds: what
        a burst looks like before an average dilutes it. Calls in flight and queued come from
        the stretch with the most of both together; arrivals and latency are each their own
        highest. Stretches join consecutive samples until they last `resolution`, so the
        short intervals of a woken tick do not pass a single call's moment off as a load."""
        if len(self.samples) < 2:
            return self.latest()
        last = self.samples[-1]
        busiest = Load()
        rps = latency = 0.0
        newer = last
        for older in list(reversed(self.samples))[1:]:
            reached_start = older.at <= last.at - span
            if (
                newer.at - older.at < resolution
                and not reached_start
                and older is not self.samples[0]
            ):
                continue
            load = between(older, newer)
            if load.concurrency > busiest.concurrency:
                busiest = load
            rps = max(rps, load.rps)
            latency = max(latency, load.latency)
            if reached_start:
                break
            newer = older
        return Load(busiest.inflight, busiest.queued, rps, latency, busiest.growth)

    def idle_for(self, now: float) -> float:
        return 0.0 if self.last_active is None else max(0.0, now - self.last_active)
