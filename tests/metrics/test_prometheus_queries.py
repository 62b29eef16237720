"""Every dashboard panel and every alert rule, evaluated by a real Prometheus that scrapes a
real gateway (with /metrics behind the admin password): each returns series, so none points
at a metric nuvem does not export."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from monitoring import prometheus, query
from nuvem.gateway.auth import ADMIN_PASSWORD_FILE
from nuvem.metrics.alert_rules import alert_rules, rules_file
from nuvem.metrics.dashboards import FUNCTION_VARIABLE, dashboards, to_json
from nuvem.metrics.scrape_config import scrape_config
from support import ADMIN_PASSWORD, Running, serving, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

STACK = """
functions:
  echo:
    handler: handlers:echo
    scaling: {min: 1, max: 2}
  fail:
    handler: handlers:fail
  crash:
    handler: handlers:crash
  slow:
    handler: handlers:sleep
    max_inflight: 1
    max_queue: 4
    timeout: 5
"""


def panel_queries() -> list[tuple[str, str]]:
    """(where, expr) of every target of every panel, from the dashboards' JSON."""
    found = []
    for stem, board in dashboards().items():
        for panel in json.loads(to_json(board))["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{stem}: {panel['title']}", target["expr"]))
    return found


FUNCTIONS = ("echo", "fail", "crash", "slow")


def _filled(expr: str) -> list[str]:
    """The expression as Grafana sends it, once per function the `function` variable may
    take (a panel on errors has series for the function that fails)."""
    expr = expr.replace("$__rate_interval", "10s")
    if f"${FUNCTION_VARIABLE}" not in expr:
        return [expr]
    return [expr.replace(f"${FUNCTION_VARIABLE}", name) for name in FUNCTIONS]


async def _drive(gateway: Running) -> None:
    """Calls that answer 200, 500, a replica killed mid-call, calls that queue, a job and
    an alert that scales."""
    for _ in range(10):
        assert (await gateway.invoke("echo", b"hi")).status_code == 200
    for _ in range(3):
        assert (await gateway.invoke("fail")).status_code == 500
    assert (await gateway.invoke("crash")).status_code >= 500
    slow = [gateway.admin.post("/function/slow?seconds=0.3") for _ in range(4)]
    assert all(r.status_code == 200 for r in await asyncio.gather(*slow))
    assert (await gateway.admin.post("/async-function/echo", content=b"job")).status_code == 202
    alert = {"alerts": [{"status": "firing", "labels": {"function_name": "echo"}}]}
    assert (await gateway.admin.post("/system/alert", json=alert)).status_code == 200


async def test_every_panel_and_alert_has_series(tmp_path: Path, handlers_dir: Path) -> None:
    state = tmp_path / "state"
    async with serving(handlers_dir, state, open_metrics=False) as gateway:
        async with gateway.client() as anonymous:
            # So Prometheus below scrapes with the password.
            assert (await anonymous.get("/metrics")).status_code == 401
        password_file = tmp_path / ADMIN_PASSWORD_FILE
        password_file.write_text(ADMIN_PASSWORD + "\n")
        rules = tmp_path / "nuvem.rules.yml"
        rules.write_text(json.dumps(rules_file(alert_rules())))  # JSON is YAML
        config = scrape_config(
            gateway.url,
            rule_files=[str(rules)],
            alertmanager=None,
            password_file=password_file,
            scrape_interval="1s",
            scrape_timeout="1s",
            evaluation_interval="1s",
        )
        await gateway.deploy(STACK, started=True)
        async with (
            prometheus(config, tmp_path / "prometheus") as url,
            httpx.AsyncClient(base_url=url, timeout=10.0) as client,
        ):
            await _drive(gateway)
            signals = [(where, _filled(expr)) for where, expr in panel_queries()]
            signals += [(f"alert {r.name}", [r.signal]) for r in alert_rules()]

            async def has_series(candidates: list[str]) -> bool:
                return any([await query(client, expr) for expr in candidates])

            async def empty() -> list[tuple[str, list[str]]]:
                return [(where, c) for where, c in signals if not await has_series(c)]

            left: list[tuple[str, list[str]]] = []

            async def all_have_series() -> bool:
                nonlocal left
                left = await empty()
                return not left

            await wait_until(all_have_series, 45.0, lambda: f"series for {left}")
            for rule in alert_rules():  # the alerts as written parse and evaluate too
                await query(client, rule.expr)
            functions = await client.get(
                "/api/v1/label/function_name/values", params={"match[]": "gateway_service_count"}
            )
            assert {"echo", "slow"} <= set(functions.json()["data"])  # the `function` variable
            targets = (await client.get("/api/v1/targets")).json()["data"]["activeTargets"]
            assert [t["health"] for t in targets] == ["up"]
