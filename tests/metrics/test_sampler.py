"""The registry sampled as InfluxDB points: the series /metrics shows, one timestamp each
round; and the fast path the exporter runs, which must write what the plain one does."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nuvem.metrics.line_protocol import encode_all
from nuvem.metrics.registry import Metrics
from nuvem.metrics.sampler import Sampler, sample


def test_the_points_are_the_series_metrics_shows() -> None:
    metrics = Metrics()
    metrics.observe_call("echo", 200, 0.01)
    metrics.service_count.labels("echo").set(2)
    shown = {
        (s.name, tuple(sorted(s.labels.items())))
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for s in family.samples
        if not s.name.endswith("_created")
    }
    points = sample(metrics.registry, 7)
    assert {(p.measurement, tuple(sorted(p.tags.items()))) for p in points} == shown
    assert (
        "gateway_function_invocation_total",
        (("code", "200"), ("function_name", "echo")),
    ) in shown
    assert {p.timestamp for p in points} == {7}
    assert all(isinstance(p.fields["value"], float) for p in points)


def test_the_fast_path_writes_what_encoding_the_samples_writes() -> None:
    metrics = Metrics()
    for code in (200, 500):
        metrics.observe_call("echo", code, 0.3)
    odd = Gauge("odd_gauge", "names that need escaping", ["a b", "c"], registry=metrics.registry)
    odd.labels("x,y=z", "").set(math.nan)  # left out: line protocol has no NaN
    odd.labels("ends\\", "new\nline").set(2.5)
    sampler = Sampler(metrics.registry, "us")
    for stamp in (1_000_000_000, 2_000_000_000):  # the second round from the remembered names
        assert sampler.lines(stamp) == encode_all(sample(metrics.registry, stamp), "us")


def test_a_removed_series_is_forgotten() -> None:
    registry = CollectorRegistry()
    calls = Counter("calls", "calls", ["fn"], registry=registry)
    calls.labels("a").inc()
    calls.labels("b").inc()
    sampler = Sampler(registry, "s")
    assert len(sampler.lines(0)) == 2
    calls.remove("a")
    assert sampler.lines(10**9) == ["calls_total,fn=b value=1.0 1"]
    assert len(sampler._heads) == 1
