"""`ScrapeGauge`: a gauge whose values are read from their source at each scrape.

For counts that live elsewhere (jobs by state in the job store, nodes in the cluster's
membership): reading them when Prometheus asks keeps them current on every gateway that
shares the store, with no loop of our own to keep in step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

Read = Callable[[], Mapping[tuple[str, ...], float]]


class ScrapeGauge(Collector):
    def __init__(self, name: str, documentation: str, labels: Sequence[str], read: Read) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self.read = read

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Declared without reading: registering must not touch the store or the cluster.
        yield GaugeMetricFamily(self.name, self.documentation, labels=self.labels)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        try:
            values = self.read()
        except Exception:  # a store or head that is away must not fail the whole scrape
            log.warning("could not read %s for /metrics", self.name, exc_info=True)
            values = {}
        for key, value in sorted(values.items()):
            family.add_metric(list(key), value)
        yield family
