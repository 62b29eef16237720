"""`NodeGauges`: the cluster's nodes by state, and the ones lost, read at each scrape."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

STATES = ("alive", "draining", "dead")  # cluster.membership.NodeState's values


@dataclass(frozen=True, slots=True)
class NodeSeen:
    state: str  # one of STATES
    lost: bool  # dead without having been drained first: crashed, cut off, killed


class NodeGauges(Collector):
    """One read of the membership per scrape answers both families."""

    def __init__(self, read: Callable[[], Sequence[NodeSeen]]) -> None:
        self.read = read

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "nuvem_nodes",
                "Cluster nodes by state (alive, draining, dead); one machine is one alive node",
                labels=["state"],
            ),
            GaugeMetricFamily(
                "nuvem_nodes_lost",
                "Dead nodes that were not drained first (crashed, cut off, or killed)",
            ),
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()  # without reading: registering must not ask the head

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_state, lost = self._families()
        try:
            nodes = list(self.read())
        except Exception:  # a head that is away must not fail the whole scrape
            log.warning("could not read the cluster's nodes for /metrics", exc_info=True)
            return
        for state in STATES:  # every state, zeros included, so the rules always have series
            by_state.add_metric([state], sum(1 for n in nodes if n.state == state))
        lost.add_metric([], sum(1 for n in nodes if n.lost))
        yield by_state
        yield lost
