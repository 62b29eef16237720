"""Worker processes for real: environments, memory limits, handler references, drain."""

from __future__ import annotations

import asyncio

import pytest

from nuvem.runtime.process_stats import alive
from support import Running, wait_until

pytestmark = pytest.mark.anyio


@pytest.mark.slow
async def test_conflicting_requirements_both_run(gateway: Running) -> None:
    await gateway.deploy(
        """
        functions:
          old: {handler: 'handlers:version', requirements: [six==1.15.0]}
          new: {handler: 'handlers:version', requirements: [six==1.16.0]}
        """
    )
    old = await gateway.invoke("old")
    new = await gateway.invoke("new")
    assert (old.status_code, old.text) == (200, "1.15.0")
    assert (new.status_code, new.text) == (200, "1.16.0")
    # A second replica of the same requirements reuses the environment instead of building.
    await gateway.admin.post("/system/scale-function/old", json={"replicas": 2})
    deployment = gateway.platform.controller.get("old")
    await wait_until(lambda: len(deployment.ready()) == 2, within=30, what="second replica")
    envs = list((gateway.platform.settings.state_dir / "envs").glob("*"))
    assert len([e for e in envs if e.is_dir() and not e.name.endswith(".tmp")]) == 2


async def test_memory_limit_replaces_the_replica(gateway: Running) -> None:
    await gateway.deploy(
        """
        functions:
          hog: {handler: 'handlers:allocate', resources: {memory: 96Mi}, timeout: 10s}
        """
    )
    deployment = gateway.platform.controller.get("hog")
    first = deployment.ready()[0]
    response = await gateway.admin.get("/function/hog?mib=200&hold=5")
    assert response.status_code == 502
    assert "memory limit" in response.json()["error"]
    await wait_until(lambda: any(r is not first for r in deployment.ready()), what="replacement")
    events = gateway.platform.records.list_events("hog")
    assert any("exceeded its memory limit" in e.message for e in events)


async def test_handler_given_as_a_file_path(gateway: Running) -> None:
    await gateway.deploy("functions: {byfile: {handler: 'handlers.py:echo'}}")
    assert (await gateway.invoke("byfile", b"file")).text == "file"


async def test_missing_attribute_says_what_to_define(gateway: Running) -> None:
    await gateway.deploy("functions: {noattr: {handler: 'handlers:does_not_exist'}}")
    response = await gateway.invoke("noattr")
    assert response.status_code == 503
    assert "has no attribute 'does_not_exist'" in response.json()["error"]


async def test_env_and_cpu_threads_reach_the_replica(gateway: Running) -> None:
    await gateway.deploy(
        """
        functions:
          env: {handler: 'handlers:environment', env: {GREETING: hola}, resources: {cpu: 2}}
        """
    )
    seen = (await gateway.invoke("env")).json()
    assert seen["GREETING"] == "hola"
    assert seen["OMP_NUM_THREADS"] == "2"
    assert seen["OMP_WAIT_POLICY"] == "PASSIVE"  # idle OpenMP threads sleep, never spin
    assert seen["NUVEM_FUNCTION"] == "env"
    assert "NUVEM_ADMIN_PASSWORD" not in seen


async def test_stop_drains_calls_in_flight_then_ends_workers(gateway: Running) -> None:
    await gateway.deploy("functions: {nap: {handler: 'handlers:async_sleep', max_inflight: 4}}")
    deployment = gateway.platform.controller.get("nap")
    pid = deployment.ready()[0].pid
    call = asyncio.create_task(gateway.admin.get("/function/nap?seconds=0.8"))
    await wait_until(lambda: deployment.router.inflight == 1, what="call in flight")
    await gateway.platform.controller.stop(grace=10)
    response = await call
    assert response.status_code == 200
    assert response.text == "slept"
    await wait_until(lambda: not alive(pid), what="worker gone")
