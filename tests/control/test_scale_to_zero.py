"""Scale to zero and back with real worker processes behind a real gateway."""

from __future__ import annotations

import asyncio

import pytest

from support import Running, local_runtime, wait_until

pytestmark = pytest.mark.anyio

STACK = """
functions:
  nap:
    handler: 'handlers:describe'
    scaling:
      min: 0
      max: 2
      mode: concurrency
      zero_after_s: 1s
      panic_window_s: 1s
      stable_window_s: 2s
      scale_down_delay_s: 1s
"""


def cold_starts(gateway: Running, function: str) -> tuple[float, float]:
    """The seconds cold calls of `function` took, and how many there were."""
    metric = gateway.platform.metrics.cold_start.labels(function)
    return float(metric._sum.get()), sum(b.get() for b in metric._buckets)


async def test_idle_function_goes_to_zero_and_a_call_brings_it_back(gateway: Running) -> None:
    await gateway.deploy(STACK)
    controller = gateway.platform.controller
    deployment = controller.get("nap")
    first = (await gateway.invoke("nap")).json()
    await wait_until(
        lambda: deployment.desired == 0 and not deployment.replicas, within=20, what="zero"
    )
    zero = [e for e in gateway.platform.records.list_events("nap") if e.data.get("to") == 0]
    assert "idle for" in zero[0].message

    # Calls that arrive at zero are held (none refused) until the woken replica is ready.
    calls = [gateway.invoke("nap") for _ in range(3)]
    answers = await asyncio.gather(*calls)
    assert [a.status_code for a in answers] == [200, 200, 200]
    woken = answers[0].json()
    assert woken["pid"] != first["pid"]
    assert woken["replica"] != first["replica"]
    seconds, count = cold_starts(gateway, "nap")
    # The first call at least found no replica; later ones may already find it ready.
    assert 1 <= count <= 3
    assert 0 < seconds / count < 5.0
    status = await gateway.admin.get("/system/function/nap")
    assert status.json()["replicas"] >= 1


async def test_bounds_without_a_mode_scale_to_zero_after_zero_after_s(gateway: Running) -> None:
    # No mode and the default 60 s stable window: autoscaling is implied, and zero comes
    # after zero_after_s, not once the window has forgotten the call.
    await gateway.deploy(
        "functions: {nap: {handler: 'handlers:describe', scaling: {min: 0, max: 2, "
        "zero_after_s: 1s}}}"
    )
    deployment = gateway.platform.controller.get("nap")
    assert deployment.spec.scaling.mode == "concurrency"
    assert (await gateway.invoke("nap")).status_code == 200
    await wait_until(
        lambda: deployment.desired == 0 and not deployment.replicas, within=15, what="zero"
    )
    assert (await gateway.invoke("nap")).status_code == 200  # woken, not refused


async def test_a_replica_from_the_warm_pool_is_the_function_it_was_told_to_be(
    gateway: Running,
) -> None:
    runtime = local_runtime(gateway.platform)
    manual = STACK.replace("min: 0", "min: 1").replace("mode: concurrency", "mode: null")
    await gateway.deploy(manual.split("      zero_after_s")[0])  # no autoscaler settings
    deployment = gateway.platform.controller.get("nap")
    cold = (await gateway.invoke("nap")).json()
    await wait_until(lambda: runtime.pool.idle_count() == 1, within=20, what="pool filled")
    hits = runtime.pool.hits
    await gateway.admin.post("/system/scale-function/nap", json={"replicas": 2})
    await wait_until(lambda: len(deployment.ready()) == 2, within=20, what="second replica")
    assert runtime.pool.hits == hits + 1
    warm = next(r for r in deployment.ready() if r.pid != cold["pid"])
    # Calls go to the first replica while it is free: stop it, so the warm one answers.
    await next(r for r in deployment.ready() if r.pid == cold["pid"]).drain_and_stop(5)
    answer = (await gateway.invoke("nap", b"x?")).json()
    assert answer["pid"] == warm.pid
    assert answer["replica"] == warm.id  # its environment is the function's, not the pool's
    assert answer["body"] == "x?"
