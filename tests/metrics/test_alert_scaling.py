"""End to end, with Debian's Prometheus and Alertmanager: calls fill a function's queue, the
exported NuvemQueueNearFull rule fires, Alertmanager posts it to the gateway's
/system/alert with the admin's basic auth, and the function gets more replicas."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from monitoring import alertmanager, prometheus, scraped
from nuvem.metrics.alert_rules import Thresholds, alert_rules, rules_file
from nuvem.metrics.alertmanager_config import Timing, alertmanager_config
from nuvem.metrics.scrape_config import ScrapeTarget, scrape_config
from support import ADMIN_PASSWORD, Running, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(90)]

STACK = """
functions:
  slow:
    handler: handlers:sleep
    max_inflight: 1
    max_queue: 2
    scaling: {min: 1, max: 3, mode: null}   # replicas move only by the alert here
"""


async def _alerts(prometheus_url: str, alertmanager_url: str) -> str:
    """What Prometheus and Alertmanager hold, for a failure's message."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        fired = (await client.get(f"{prometheus_url}/api/v1/alerts")).text
        held = (await client.get(f"{alertmanager_url}/api/v2/alerts")).text
        depth = await client.get(
            f"{prometheus_url}/api/v1/query",
            params={"query": "max_over_time(nuvem_function_queue_depth[1m])"},
        )
    return f"queue depth seen: {depth.text}; alerts: {fired}; in alertmanager: {held}"


async def test_a_firing_queue_alert_adds_replicas(gateway: Running, tmp_path: Path) -> None:
    (deployment,) = await gateway.deploy(STACK, started=True)
    password_file = tmp_path / "admin-password"
    password_file.write_text(ADMIN_PASSWORD + "\n")
    # Alerts at once: no `for`, Alertmanager sends a group as soon as it forms.
    rules = tmp_path / "nuvem.rules.yml"
    rules.write_text(json.dumps(rules_file(alert_rules(Thresholds(queue_for="0s")))))
    timing = Timing(scale_group_wait="0s", scale_group_interval="1s", scale_repeat_interval="1h")
    am_config = alertmanager_config(gateway.url, password_file, timing)
    began = time.monotonic()
    async with alertmanager(am_config, tmp_path / "alertmanager") as am_url:
        config = scrape_config(
            gateway.url,
            rule_files=[str(rules)],
            alertmanager=ScrapeTarget.of(am_url).address,
            scrape_interval="1s",
            scrape_timeout="1s",
            evaluation_interval="1s",
        )
        async with (
            prometheus(config, tmp_path / "prometheus") as prom_url,
            httpx.AsyncClient(base_url=prom_url, timeout=5.0) as client,
        ):
            # Prometheus applies new targets every 5 s: calls before its first scrape would
            # queue unseen.
            await wait_until(lambda: scraped(client), 20.0, "prometheus to scrape the gateway")
            # One call runs, two wait: the queue is full (2 of max_queue 2).
            calls = [
                asyncio.create_task(gateway.admin.post("/function/slow?seconds=3"))
                for _ in range(3)
            ]
            await wait_until(lambda: deployment.router.queued == 2, 10.0, "two calls queued")
            try:
                await wait_until(
                    lambda: deployment.desired > 1, 45.0, "the alert to raise desired replicas"
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}; {await _alerts(prom_url, am_url)}") from None
            fired_after = time.monotonic() - began
            answers = await asyncio.gather(*calls)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert deployment.desired == 2  # one step: a fifth of max 3, at least one
    events = (await gateway.admin.get("/system/events", params={"function": "slow"})).json()
    alerted = [e for e in events if e["kind"] == "alert"]
    assert alerted, events
    assert "NuvemQueueNearFull" in alerted[0]["message"]
    await wait_until(lambda: len(deployment.ready()) == 2, 30.0, "the second replica ready")
    print(f"queue full -> replicas added in {fired_after:.1f}s")
