"""Calls to a gateway that runs in its own process (`Nuvem.start`), as its admin: the
steps the cluster tests share. Loaded as a plugin (`-p gateway_calls`) for its `admin`
fixture, which needs a `gateway` fixture of the test module."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from support import ADMIN_PASSWORD, Nuvem, wait_until


@pytest.fixture
async def admin(gateway: Nuvem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=gateway.url, auth=("admin", ADMIN_PASSWORD), timeout=60
    ) as client:
        await wait_until_healthy(client, gateway)
        yield client


async def wait_until_healthy(client: httpx.AsyncClient, gateway: Nuvem) -> None:
    async def healthy() -> bool:
        if gateway.process.poll() is not None:
            raise AssertionError(f"gateway exited:\n{gateway.log()[-3000:]}")
        try:
            return (await client.get("/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(healthy, within=60, what="the gateway healthy")


async def deploy(admin: httpx.AsyncClient, spec: dict[str, object]) -> None:
    answer = await admin.post("/system/functions", json=spec)
    assert answer.status_code == 202, answer.text


async def status(admin: httpx.AsyncClient, name: str) -> dict[str, object]:
    answer = await admin.get(f"/system/function/{name}")
    assert answer.status_code == 200, answer.text
    found: dict[str, object] = answer.json()
    return found


async def until_ready(admin: httpx.AsyncClient, name: str, replicas: int, within: float) -> None:
    found: dict[str, object] = {}

    async def ready() -> bool:
        nonlocal found
        found = await status(admin, name)
        return int(str(found["availableReplicas"])) >= replicas

    await wait_until(ready, within, what=lambda: f"{name} ready: {json.dumps(found)[:2000]}")


def nodes_of(found: dict[str, object]) -> list[str]:
    replicas = found["replicaList"]
    assert isinstance(replicas, list)
    return sorted(r["node"] for r in replicas if r["state"] == "ready")


async def remove(admin: httpx.AsyncClient, name: str) -> None:
    await admin.delete(f"/system/function/{name}")
