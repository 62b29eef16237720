"""/system/alert (Alertmanager webhook) and /system/scaling, through a real gateway."""

from __future__ import annotations

from typing import Any

import pytest

from support import Running, wait_until

pytestmark = pytest.mark.anyio

STACK = """
functions:
  figlet: {handler: 'handlers:echo', scaling: {min: 1, max: 5}}
"""


def webhook(*alerts: tuple[str, str]) -> dict[str, Any]:
    """An Alertmanager (version 4) webhook body with (status, function_name) alerts."""
    return {
        "version": "4",
        "status": alerts[0][0],
        "receiver": "nuvem",
        "groupLabels": {"alertname": "APIHighInvocationRate"},
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "APIHighInvocationRate", "function_name": name},
                "annotations": {"description": "high invocation rate"},
                "startsAt": "2026-11-22T11:00:00Z",
            }
            for status, name in alerts
        ],
    }


async def test_firing_alert_scales_up_by_a_step_and_resolved_returns_to_min(
    gateway: Running,
) -> None:
    await gateway.deploy(STACK)
    deployment = gateway.platform.controller.get("figlet")
    response = await gateway.admin.post(
        "/system/alert", json=webhook(("firing", "figlet.openfaas-fn"))
    )
    assert response.status_code == 200
    scaled = response.json()["scaled"]
    assert (scaled[0]["function"], scaled[0]["scaled_from"], scaled[0]["scaled_to"]) == (
        "figlet",
        1,
        2,
    )
    await wait_until(lambda: len(deployment.ready()) == 2, within=20, what="stepped up")
    again = await gateway.admin.post("/system/alert", json=webhook(("firing", "figlet")))
    assert again.json()["scaled"][0]["scaled_to"] == 3
    resolved = await gateway.admin.post("/system/alert", json=webhook(("resolved", "figlet")))
    assert resolved.json()["scaled"][0]["scaled_to"] == 1
    await wait_until(lambda: len(deployment.replicas) == 1, within=30, what="back to min")
    events = gateway.platform.records.list_events("figlet")
    alerts = [e for e in events if e.kind == "alert"]
    assert [e.data["to"] for e in alerts] == [2, 3, 1]
    assert "APIHighInvocationRate" in alerts[0].message


async def test_alerts_for_unknown_functions_are_skipped_with_the_reason(gateway: Running) -> None:
    await gateway.deploy(STACK)
    body = webhook(("firing", "nope"), ("firing", ""), ("firing", "figlet"))
    response = await gateway.admin.post("/system/alert", json=body)
    assert response.status_code == 200
    skipped = response.json()["skipped"]
    assert "function 'nope' is not deployed (deployed: figlet)" in skipped[0]["message"]
    assert "has no labels.function_name" in skipped[1]["message"]
    assert response.json()["scaled"][0]["scaled_to"] == 2


async def test_the_alert_webhook_needs_the_admin(gateway: Running) -> None:
    async with gateway.client() as anonymous:
        response = await anonymous.post("/system/alert", json=webhook(("firing", "figlet")))
    assert response.status_code == 401
    assert "error" in response.json()


async def test_a_malformed_webhook_says_what_is_wrong(gateway: Running) -> None:
    response = await gateway.admin.post("/system/alert", json={"alerts": [{"status": "odd"}]})
    assert response.status_code == 400
    assert "alerts.0.status" in response.json()["error"]


async def test_scaling_view_shows_load_and_decisions(gateway: Running) -> None:
    await gateway.deploy(
        """
        functions:
          auto: {handler: 'handlers:echo', scaling: {min: 1, max: 3, mode: concurrency}}
        """
    )
    for _ in range(5):
        assert (await gateway.invoke("auto", b"x")).status_code == 200
    deployment = gateway.platform.controller.get("auto")
    await wait_until(lambda: deployment.decision is not None, what="a decision")
    response = await gateway.admin.get("/system/scaling")
    assert response.status_code == 200
    (auto,) = response.json()
    assert (auto["name"], auto["mode"], auto["desired"], auto["ready"]) == (
        "auto",
        "concurrency",
        1,
        1,
    )
    assert auto["decision"].startswith("hold at 1")
    assert set(auto["load"]) == {"inflight", "queued", "rps", "latency_ms"}
