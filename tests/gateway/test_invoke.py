"""Invoking functions through a real gateway socket and real worker processes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from nuvem.runtime.replica_state import ReplicaState
from support import Running, wait_until

pytestmark = pytest.mark.anyio


async def test_request_reaches_handler_with_path_query_headers(gateway: Running) -> None:
    await gateway.deploy("functions: {describe: {handler: 'handlers:describe'}}")
    response = await gateway.admin.put(
        "/function/describe/a/b?x=1&y=two",
        content=b"payload",
        headers={"X-Custom": "value", "Content-Type": "text/plain"},
    )
    assert response.status_code == 200
    seen = response.json()
    assert seen["method"] == "PUT"
    assert seen["path"] == "/a/b"
    assert seen["query"] == {"x": "1", "y": "two"}
    assert seen["body"] == "payload"
    assert seen["headers"]["x-custom"] == "value"
    assert "authorization" not in seen["headers"]  # credentials stop at the gateway
    assert seen["headers"]["x-call-id"] == response.headers["x-call-id"]
    assert int(response.headers["x-start-time"]) > 1_600_000_000 * 10**9
    assert float(response.headers["x-duration-seconds"]) > 0


async def test_caller_call_id_is_kept(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    response = await gateway.invoke("echo", b"x", headers={"X-Call-Id": "abc-123"})
    assert response.headers["x-call-id"] == "abc-123"


@pytest.mark.parametrize(
    ("kind", "content_type", "body"),
    [
        ("bytes", "application/octet-stream", b"\x00\x01"),
        ("str", "text/plain; charset=utf-8", b"text"),
        ("dict", "application/json", b'{"a":1}'),
        ("list", "application/json", b"[1,2]"),
        ("none", None, b""),
    ],
)
async def test_return_types(
    gateway: Running, kind: str, content_type: str | None, body: bytes
) -> None:
    await gateway.deploy("functions: {returns: {handler: 'handlers:returns'}}")
    response = await gateway.admin.get(f"/function/returns?kind={kind}")
    assert response.status_code == 200
    assert response.content == body
    assert response.headers.get("content-type") == content_type


async def test_explicit_response_status_and_headers(gateway: Running) -> None:
    await gateway.deploy("functions: {respond: {handler: 'handlers:respond'}}")
    spec = {"status": 201, "body": {"made": True}, "headers": {"X-Thing": "1"}}
    response = await gateway.invoke("respond", json.dumps(spec).encode())
    assert response.status_code == 201
    assert response.json() == {"made": True}
    assert response.headers["x-thing"] == "1"


async def test_class_handler_sets_up_once_per_replica(gateway: Running) -> None:
    await gateway.deploy("functions: {counter: {handler: 'handlers:Counter'}}")
    counts = [(await gateway.invoke("counter")).json()["count"] for _ in range(3)]
    assert counts == [1, 2, 3]


async def test_async_handlers_run_concurrently_on_one_replica(gateway: Running) -> None:
    await gateway.deploy("functions: {nap: {handler: 'handlers:async_sleep', max_inflight: 20}}")
    loop = asyncio.get_running_loop()
    began = loop.time()
    replies = await asyncio.gather(
        *(gateway.admin.get("/function/nap?seconds=0.5") for _ in range(10))
    )
    assert all(r.status_code == 200 for r in replies)
    # Ten half-second naps on one replica: concurrent, so far less than five seconds.
    assert loop.time() - began < 2.5


async def test_user_exception_is_500_and_replica_lives(gateway: Running) -> None:
    await gateway.deploy("functions: {fail: {handler: 'handlers:fail'}}")
    deployment = gateway.platform.controller.get("fail")
    pid = deployment.ready()[0].pid
    response = await gateway.invoke("fail")
    assert response.status_code == 500
    error = response.json()["error"]
    assert "ValueError" in error
    assert "the input was not acceptable" in error
    again = await gateway.invoke("fail")
    assert again.status_code == 500
    assert deployment.ready()[0].pid == pid
    lines = gateway.platform.logbook.tail("fail")
    assert any("Traceback" in line.text for line in lines)


async def test_unknown_function_is_404_json(gateway: Running) -> None:
    response = await gateway.invoke("nope")
    assert response.status_code == 404
    assert "not deployed" in response.json()["error"]


async def test_crash_mid_request_is_502_naming_function_and_cause(gateway: Running) -> None:
    await gateway.deploy("functions: {crash: {handler: 'handlers:crash'}}")
    deployment = gateway.platform.controller.get("crash")
    first = deployment.ready()[0]
    response = await gateway.invoke("crash")
    assert response.status_code == 502
    error = response.json()["error"]
    assert "'crash'" in error
    assert "SIGKILL" in error
    # The dead replica is replaced.
    await wait_until(
        lambda: any(r is not first for r in deployment.ready()), what="replacement replica"
    )
    events = gateway.platform.records.list_events("crash")
    assert any(e.kind == "replica_died" and "SIGKILL" in e.message for e in events)
    metrics = (await gateway.admin.get("/metrics")).text
    assert 'nuvem_replica_restarts_total{cause="killed by SIGKILL",function_name="crash"} 1.0' in (
        metrics
    )


async def test_idempotent_call_fails_over_to_another_replica(
    gateway: Running, tmp_path: Path
) -> None:
    await gateway.deploy(
        """
        functions:
          crash: {handler: 'handlers:crash', idempotent: true, scaling: {min: 2, max: 2}}
        """
    )
    marker = tmp_path / "crashed-once"
    response = await gateway.admin.post(f"/function/crash?marker={marker}")
    assert response.status_code == 200
    assert response.text.startswith("survived on crash-")
    assert marker.exists()  # the first attempt really died


async def test_timeout_is_504(gateway: Running) -> None:
    await gateway.deploy("functions: {sleep: {handler: 'handlers:sleep', timeout: 300ms}}")
    response = await gateway.admin.get("/function/sleep?seconds=2")
    assert response.status_code == 504
    assert "timeout" in response.json()["error"]


async def test_queue_overflow_is_429_with_retry_after_at_once(gateway: Running) -> None:
    await gateway.deploy(
        "functions: {sleep: {handler: 'handlers:sleep', max_inflight: 1, max_queue: 2}}"
    )
    slow = [asyncio.create_task(gateway.admin.get("/function/sleep?seconds=1")) for _ in range(3)]
    router = gateway.platform.controller.get("sleep").router
    await wait_until(lambda: router.inflight == 1 and router.queued == 2, what="queue full")
    loop = asyncio.get_running_loop()
    began = loop.time()
    rejected = await gateway.admin.get("/function/sleep?seconds=1")
    assert loop.time() - began < 0.5  # refused at once, not after waiting
    assert rejected.status_code == 429
    assert int(rejected.headers["retry-after"]) >= 1
    assert "max_queue" in rejected.json()["error"]
    assert [r.status_code for r in await asyncio.gather(*slow)] == [200, 200, 200]


async def test_queued_call_past_deadline_is_504(gateway: Running) -> None:
    await gateway.deploy(
        "functions: {sleep: {handler: 'handlers:sleep', max_inflight: 1, timeout: 500ms}}"
    )
    busy = asyncio.create_task(gateway.admin.get("/function/sleep?seconds=0.45"))
    router = gateway.platform.controller.get("sleep").router
    await wait_until(lambda: router.inflight == 1, what="first call running")
    queued = await gateway.admin.get("/function/sleep?seconds=0.45")
    assert (await busy).status_code == 200
    assert queued.status_code == 504


async def test_least_outstanding_spreads_load(gateway: Running) -> None:
    await gateway.deploy(
        """
        functions:
          nap: {handler: 'handlers:async_sleep', scaling: {min: 3, max: 3}, max_inflight: 10}
        """
    )
    deployment = gateway.platform.controller.get("nap")
    calls = [asyncio.create_task(gateway.admin.get("/function/nap?seconds=0.5")) for _ in range(6)]
    await wait_until(lambda: deployment.router.inflight == 6, what="six calls in flight")
    assert sorted(r.inflight for r in deployment.ready()) == [2, 2, 2]
    await asyncio.gather(*calls)


async def test_setup_failure_is_503_naming_the_error(gateway: Running) -> None:
    await gateway.deploy("functions: {broken: {handler: 'handlers:BrokenSetup'}}")
    response = await gateway.invoke("broken")
    assert response.status_code == 503
    assert "model file missing" in response.json()["error"]
    status = (await gateway.admin.get("/system/function/broken")).json()
    assert status["status"] == "error"
    assert "model file missing" in status["error"]


async def test_missing_module_names_the_fix(gateway: Running) -> None:
    await gateway.deploy("functions: {ghost: {handler: 'nowhere:handle'}}")
    status = (await gateway.admin.get("/system/function/ghost")).json()
    assert "'nowhere' not found" in status["error"]


async def test_replica_states_and_manual_scale(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo', scaling: {max: 3}}}")
    deployment = gateway.platform.controller.get("echo")
    response = await gateway.admin.post(
        "/system/scale-function/echo", json={"serviceName": "echo", "replicas": 3}
    )
    assert response.status_code == 202
    await wait_until(lambda: len(deployment.ready()) == 3, what="three replicas")
    assert all(r.state is ReplicaState.READY for r in deployment.ready())
    refused = await gateway.admin.post("/system/scale-function/echo", json={"replicas": 9})
    assert refused.status_code == 409  # the bounds of the function as it is
    assert "max 3" in refused.json()["error"]
    await gateway.admin.post("/system/scale-function/echo", json={"replicas": 1})
    await wait_until(lambda: len(deployment.replicas) == 1, what="scaled down to one")


async def test_update_rolls_replicas_without_failed_calls(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    deployment = gateway.platform.controller.get("echo")
    old = deployment.ready()[0]
    stop = asyncio.Event()
    codes: list[int] = []

    async def load() -> None:
        while not stop.is_set():
            codes.append((await gateway.invoke("echo", b"x")).status_code)

    loader = asyncio.create_task(load())
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo', env: {V: '2'}}}")
    await wait_until(lambda: old not in deployment.replicas, what="old replica retired")
    stop.set()
    await loader
    assert codes
    assert set(codes) == {200}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"status": 1000}, "status 1000"),
        ({"status": 200, "headers": {"X-Name": "café ☕"}}, "not latin-1"),
        ({"status": 200, "headers": {"X-Split": "a\r\nSet-Cookie: x"}}, "malformed header"),
    ],
)
async def test_invalid_answers_from_handlers_are_500_json(
    gateway: Running, spec: dict[str, object], message: str
) -> None:
    await gateway.deploy("functions: {respond: {handler: 'handlers:respond'}}")
    response = await gateway.invoke("respond", json.dumps(spec).encode())
    assert response.status_code == 500
    assert message in response.json()["error"]
    assert (await gateway.invoke("respond", b'{"status": 200}')).status_code == 200
