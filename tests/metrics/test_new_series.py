"""The series the alert rules compare with, on a real gateway's /metrics: each function's
deadline and queue capacity, jobs by state, nodes by state, pending starts with zeros."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from nuvem.metrics.node_gauges import NodeSeen
from nuvem.metrics.registry import PENDING_SHORTS, Metrics
from support import Running

pytestmark = pytest.mark.anyio


async def _samples(gateway: Running) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = (await gateway.admin.get("/metrics")).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


async def test_gateway_exports_deadline_capacity_jobs_and_nodes(gateway: Running) -> None:
    await gateway.deploy(
        """
        functions:
          echo: {handler: handlers:echo, timeout: 7, max_queue: 12}
        """,
        started=True,
    )
    assert (await gateway.admin.post("/async-function/echo", content=b"x")).status_code == 202
    samples = await _samples(gateway)
    assert samples[_key("nuvem_function_timeout_seconds", function_name="echo")] == 7.0
    assert samples[_key("nuvem_function_queue_capacity", function_name="echo")] == 12.0
    for short in PENDING_SHORTS:
        assert samples[_key("nuvem_replicas_pending", function_name="echo", short=short)] == 0
    states = ("queued", "running", "succeeded", "failed", "cancelled", "dead_letter")
    jobs = {s: samples[_key("nuvem_jobs", function_name="echo", state=s)] for s in states}
    assert sum(jobs.values()) == 1  # the job above, in whatever state it has reached
    assert jobs["dead_letter"] == 0
    assert samples[_key("nuvem_nodes", state="alive")] == 1  # one machine is one node
    assert samples[_key("nuvem_nodes", state="dead")] == 0
    assert samples[_key("nuvem_nodes_lost")] == 0

    await gateway.platform.controller.remove("echo")
    after = await _samples(gateway)
    assert _key("nuvem_function_timeout_seconds", function_name="echo") not in after
    assert _key("nuvem_function_queue_capacity", function_name="echo") not in after


def test_node_gauges_count_states_and_lost_nodes() -> None:
    metrics = Metrics(CollectorRegistry())
    seen = [NodeSeen("alive", False), NodeSeen("dead", True), NodeSeen("dead", False)]
    metrics.watch_nodes(lambda: seen)
    value = metrics.registry.get_sample_value
    assert value("nuvem_nodes", {"state": "alive"}) == 1
    assert value("nuvem_nodes", {"state": "draining"}) == 0
    assert value("nuvem_nodes", {"state": "dead"}) == 2
    assert value("nuvem_nodes_lost") == 1  # the drained one left; the other was lost


def test_a_source_that_fails_leaves_the_rest_of_the_scrape() -> None:
    metrics = Metrics(CollectorRegistry())

    def away() -> list[NodeSeen]:
        raise ConnectionError("the head is away")

    metrics.watch_nodes(away)
    metrics.watch_jobs(lambda: {("echo", "dead_letter"): 3.0})
    value = metrics.registry.get_sample_value
    assert value("nuvem_nodes_lost") is None
    assert value("nuvem_jobs", {"function_name": "echo", "state": "dead_letter"}) == 3
