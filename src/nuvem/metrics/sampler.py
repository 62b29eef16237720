"""One round of samples from a Prometheus registry, as InfluxDB points.

Each sample becomes a point named as /metrics names it (`gateway_function_invocation_total`,
`gateway_functions_seconds_bucket` with its `le` tag, `..._sum`, `..._count`), its labels as
tags and its value in the field `value`, always a float: InfluxDB fixes a field's type with
its first write, and a counter must not start as an integer. Every point of a round carries
the same timestamp, so one query instant sees one consistent round. The `_created` series
(when a counter was first touched) are left out: they are timestamps, not measurements.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry

from nuvem.metrics.line_protocol import (
    NANOSECONDS,
    Point,
    Precision,
    escape_measurement,
    escape_name,
)

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


class Sampler:
    """`sample` and `encode_all` in one pass, remembering each series' escaped name and
    tags between rounds: series outlive rounds, and escaping them was most of the cost
    (100 functions: 9,000 points, 170 ms a round before, see docs/observability.md)."""

    def __init__(self, registry: CollectorRegistry, precision: Precision) -> None:
        self.registry = registry
        self.unit = NANOSECONDS[precision]
        self._heads: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def lines(self, timestamp: int) -> list[str]:
        """The round at `timestamp` (nanoseconds), as `encode_all(sample(...))` writes it."""
        tail = f" {timestamp // self.unit}"
        heads = self._heads
        seen: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        lines = []
        for family in self.registry.collect():
            created = family.name + "_created" if family.type in _WITH_CREATED else None
            for s in family.samples:
                if s.name == created:
                    continue
                value = float(s.value)
                if not math.isfinite(value):
                    continue
                key = (s.name, tuple(s.labels.items()))
                head = heads.get(key)
                if head is None:
                    head = _head(s.name, s.labels)
                seen[key] = head
                lines.append(f"{head}{value!r}{tail}")
        # Only the series seen this round stay: a removed function's go with it.
        self._heads = seen
        return lines


def _head(name: str, labels: dict[str, str]) -> str:
    tags = "".join(
        f",{escape_name(k)}={escape_name(v)}" for k, v in sorted(labels.items()) if k and v
    )
    return f"{escape_measurement(name)}{tags} {FIELD}="
