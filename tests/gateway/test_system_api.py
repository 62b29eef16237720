"""The /system API, authentication, metrics, OpenAPI and persistence across restarts."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from nuvem.config import Settings
from nuvem.gateway.auth import ADMIN_PASSWORD_FILE
from nuvem.platform import Platform
from support import ADMIN_PASSWORD, Running, serving, wait_until

pytestmark = pytest.mark.anyio


async def test_system_needs_admin(gateway: Running) -> None:
    async with gateway.client() as anonymous:
        response = await anonymous.get("/system/functions")
        assert response.status_code == 401
        assert "admin credentials" in response.json()["error"]
        assert "basic" in response.headers["www-authenticate"].lower()
        wrong = await anonymous.get("/system/functions", auth=("admin", "nope"))
        assert wrong.status_code == 401
        assert (
            await anonymous.get("/system/functions", auth=("root", ADMIN_PASSWORD))
        ).status_code == 401
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/metrics")).status_code == 200


async def test_an_api_key_on_system_is_told_keys_only_invoke(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    key = await gateway.api_key("echo")
    async with gateway.client() as client:
        answer = await client.get("/system/functions", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 401
    error = answer.json()["error"]
    assert "an API key only invokes functions" in error
    assert "credentials are wrong" not in error


async def test_api_keys_scope_and_revocation(gateway: Running) -> None:
    await gateway.deploy(
        "functions: {echo: {handler: 'handlers:echo'}, other: {handler: 'handlers:echo'}}"
    )
    created = (await gateway.admin.post("/system/keys", json={"functions": ["echo"]})).json()
    key = created["key"]
    assert key.startswith("nv_")
    async with gateway.client() as client:
        missing = await client.post("/function/echo", content=b"x")
        assert missing.status_code == 401
        assert "nuvem keys create" in missing.json()["error"]
        bearer = await client.post(
            "/function/echo", content=b"x", headers={"Authorization": f"Bearer {key}"}
        )
        assert bearer.status_code == 200
        assert bearer.content == b"x"
        header = await client.post("/function/echo", content=b"y", headers={"X-API-Key": key})
        assert header.status_code == 200
        forbidden = await client.post("/function/other", headers={"X-API-Key": key})
        assert forbidden.status_code == 403
        assert "may not invoke 'other'" in forbidden.json()["error"]
        forged = key[:-4] + "0000"
        assert (
            await client.post("/function/echo", headers={"X-API-Key": forged})
        ).status_code == 401
        listed = (await gateway.admin.get("/system/keys")).json()
        assert [k["id"] for k in listed] == [created["id"]]
        assert "key" not in listed[0]
        assert (await gateway.admin.delete(f"/system/keys/{created['id']}")).status_code == 204
        revoked = await client.post("/function/echo", headers={"X-API-Key": key})
        assert revoked.status_code == 401
    stored = gateway.platform.records.get_key(created["id"])
    assert stored is not None
    assert key.split("_")[2] not in stored.secret_hash


async def test_function_lifecycle_openfaas_shapes(gateway: Running) -> None:
    spec = {"service": "echo", "handler": "handlers:echo", "root": str(gateway.root)}
    created = await gateway.admin.post("/system/functions", json=spec)
    assert created.status_code == 202
    assert (await gateway.admin.post("/system/functions", json=spec)).status_code == 409
    deployment = gateway.platform.controller.get("echo")
    await wait_until(lambda: bool(deployment.ready()), what="echo ready")
    listed = (await gateway.admin.get("/system/functions")).json()
    assert listed[0]["name"] == "echo"
    assert listed[0]["image"] == "handlers:echo"
    assert listed[0]["availableReplicas"] == 1
    assert listed[0]["replicas"] == 1
    updated = await gateway.admin.put("/system/functions", json={**spec, "max_inflight": 7})
    assert updated.status_code == 202
    assert updated.json()["spec"]["max_inflight"] == 7
    missing = await gateway.admin.put("/system/functions", json={**spec, "service": "ghost"})
    assert missing.status_code == 404
    response = await gateway.admin.request(
        "DELETE", "/system/functions", json={"functionName": "echo"}
    )
    assert response.status_code == 202
    assert (await gateway.admin.get("/system/function/echo")).status_code == 404


async def test_bad_function_bodies_are_400_with_reasons(gateway: Running) -> None:
    response = await gateway.admin.post(
        "/system/functions", json={"name": "Bad_Name", "handler": "x:y", "root": "/"}
    )
    assert response.status_code == 400
    assert "function name 'Bad_Name' is invalid" in response.json()["error"]
    relative = await gateway.admin.post(
        "/system/functions", json={"name": "rel", "handler": "x:y", "root": "."}
    )
    assert relative.status_code == 400
    assert "absolute folder" in relative.json()["error"]
    gpu = await gateway.admin.post(
        "/system/functions",
        json={"name": "gpu", "handler": "x:y", "root": "/", "resources": {"gpu": 64}},
    )
    assert gpu.status_code == 400
    assert "needs 64 GPU" in gpu.json()["error"]
    broken = await gateway.admin.post(
        "/system/functions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    assert "error" in broken.json()


async def test_logs_ndjson_tail_and_follow(gateway: Running) -> None:
    await gateway.deploy("functions: {fail: {handler: 'handlers:fail'}}")
    await gateway.invoke("fail")
    response = await gateway.admin.get("/system/logs", params={"name": "fail", "tail": 3})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) == 3
    assert set(lines[0]) == {"name", "instance", "stream", "timestamp", "text"}
    assert lines[-1]["text"].startswith("ValueError")

    async def follow() -> list[dict[str, object]]:
        seen = []
        params: dict[str, str | int] = {"name": "fail", "tail": 0, "follow": "true"}
        async with gateway.admin.stream("GET", "/system/logs", params=params) as stream:
            async for line in stream.aiter_lines():
                seen.append(json.loads(line))
                if str(seen[-1]["text"]).startswith("ValueError"):
                    return seen
        return seen

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0)  # let the follower subscribe before the next error is logged
    await wait_until(
        lambda: bool(gateway.platform.logbook._subscribers.get("fail")), what="follower"
    )
    await gateway.invoke("fail")
    seen = await asyncio.wait_for(follower, 10)
    assert str(seen[-1]["text"]).startswith("ValueError")
    assert (await gateway.admin.get("/system/logs", params={"name": "ghost"})).status_code == 404


async def test_info_events_metrics_openapi(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    await gateway.invoke("echo", b"x")
    info = (await gateway.admin.get("/system/info")).json()
    assert info["provider"]["provider"] == "nuvem"
    events = (await gateway.admin.get("/system/events", params={"function": "echo"})).json()
    assert events[0]["kind"] == "deployed"
    metrics = (await gateway.admin.get("/metrics")).text
    for needle in (
        'gateway_function_invocation_total{code="200",function_name="echo"} 1.0',
        'gateway_functions_seconds_count{code="200",function_name="echo"} 1.0',
        'gateway_service_count{function_name="echo"} 1.0',
        'nuvem_replicas{function_name="echo",state="ready"} 1.0',
        "nuvem_function_queue_depth",
        "nuvem_function_inflight",
        "nuvem_controller_tick_seconds",
    ):
        assert needle in metrics
    schema = (await gateway.admin.get("/openapi.json")).json()
    paths = schema["paths"]
    for path in (
        "/function/{name}",
        "/function/{name}/{path}",
        "/system/functions",
        "/system/function/{name}",
        "/system/scale-function/{name}",
        "/system/info",
        "/system/logs",
        "/system/keys",
        "/healthz",
        "/metrics",
    ):
        assert path in paths, path


async def test_state_survives_restart(tmp_path: Path, handlers_dir: Path) -> None:
    state = tmp_path / "state"
    async with serving(handlers_dir, state) as first:
        spec = {
            "name": "echo",
            "handler": "handlers:echo",
            "root": str(handlers_dir),
            "scaling": {"min": 1, "max": 3},
        }
        assert (await first.admin.post("/system/functions", json=spec)).status_code == 202
        await first.admin.post("/system/scale-function/echo", json={"replicas": 2})
        key = str((await first.admin.post("/system/keys", json={})).json()["key"])
    began = time.time()
    async with serving(handlers_dir, state) as second:
        deployment = second.platform.controller.get("echo")
        await wait_until(lambda: len(deployment.ready()) == 2, what="two replicas back")
        # Log lines of the first run were kept on disk and read back.
        earlier = [line for line in second.platform.logbook.tail("echo") if line.timestamp < began]
        assert any(line.text.startswith("deployed echo") for line in earlier)
    platform = Platform.create(Settings(state_dir=state, admin_password=ADMIN_PASSWORD))
    try:
        assert platform.auth._key_for(key) is not None
    finally:
        platform.records.close()


def test_admin_password_generated_once_and_private(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    platform = Platform.create(settings)
    platform.records.close()
    path = settings.state_dir / ADMIN_PASSWORD_FILE
    assert platform.admin_password_file == path
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    password = path.read_text().strip()
    again = Platform.create(settings)
    assert path.read_text().strip() == password
    assert again.records.get_setting("admin_password_hash") is not None
    assert password not in (again.records.get_setting("admin_password_hash") or "")
    again.records.close()


def test_env_admin_password_is_used_at_first_start(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state", admin_password="chosen")
    platform = Platform.create(settings)
    assert platform.admin_password_file is None
    assert not (settings.state_dir / ADMIN_PASSWORD_FILE).exists()
    platform.auth.check_admin("Basic " + __import__("base64").b64encode(b"admin:chosen").decode())
    platform.records.close()


async def test_unknown_routes_and_methods_answer_json(gateway: Running) -> None:
    missing = await gateway.admin.get("/nowhere")
    assert missing.status_code == 404
    assert "no route /nowhere" in missing.json()["error"]
    wrong = await gateway.admin.patch("/system/functions")
    assert wrong.status_code == 405
    assert "PATCH is not allowed" in wrong.json()["error"]
