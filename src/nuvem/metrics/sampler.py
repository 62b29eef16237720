"""One round of samples from a Prometheus registry, as InfluxDB points.

Each sample becomes a point named as /metrics names it (`gateway_function_invocation_total`,
`gateway_functions_seconds_bucket` with its `le` tag, `..._sum`, `..._count`), its labels as
tags and its value in the field `value`, always a float: InfluxDB fixes a field's type with
its first write, and a counter must not start as an integer. Every point of a round carries
the same timestamp, so one query instant sees one consistent round. The `_created` series
(when a counter was first touched) are left out: they are timestamps, not measurements.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from nuvem.metrics.line_protocol import Point

FIELD = "value"
_WITH_CREATED = frozenset({"counter", "histogram", "summary", "gaugehistogram"})


def sample(registry: CollectorRegistry, timestamp: int) -> list[Point]:
    """Every sample `registry` holds now; `timestamp` in nanoseconds since the epoch."""
    points = []
    for family in registry.collect():
        created = family.name + "_created" if family.type in _WITH_CREATED else None
        for s in family.samples:
            if s.name == created:
                continue
            points.append(Point(s.name, {FIELD: float(s.value)}, s.labels, timestamp))
    return points
