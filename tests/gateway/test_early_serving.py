"""The gateway serves function calls, the model protocols and its health before its FastAPI
part (the /system APIs, /metrics, the dashboard, the OpenAPI document) has loaded; every
route checks credentials from the first byte on, and a system route asked meanwhile waits
for that part rather than answering 404."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from nuvem.config import Settings
from nuvem.gateway.api_loader import LoadedApi
from nuvem.gateway.app import Gateway
from nuvem.gateway.services import Services
from nuvem.platform import Platform
from support import ADMIN_PASSWORD, PlatformEnvironments, echo_runtime, spec

pytestmark = pytest.mark.anyio


class HeldGateway(Gateway):
    """A gateway whose FastAPI part finishes loading only once the test lets it."""

    def __init__(self, platform: Services, release: threading.Event) -> None:
        super().__init__(platform, manage_lifespan=False)
        self.release = release

    def _load_api(self) -> LoadedApi:
        assert self.release.wait(60), "the test never let the API load"
        return super()._load_api()


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    settings = Settings(
        state_dir=tmp_path, admin_password=ADMIN_PASSWORD, url="http://gw", open_health=False
    )
    platform = Platform.create(
        settings, runtime=echo_runtime(), environments=PlatformEnvironments()
    )
    await platform.start()
    try:
        yield platform
    finally:
        await platform.stop()


async def test_calls_and_health_are_served_and_checked_while_the_api_loads(
    platform: Platform,
) -> None:
    release = threading.Event()
    gateway = HeldGateway(platform, release)
    platform.controller.deploy(spec(name="echo"))
    transport = httpx.ASGITransport(app=gateway)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://gw") as anonymous,
        httpx.AsyncClient(
            transport=transport, base_url="http://gw", auth=("admin", ADMIN_PASSWORD)
        ) as admin,
    ):
        try:
            # A system route asked first waits for the API (not a 404), and starts its load.
            listed = asyncio.ensure_future(admin.get("/system/functions"))
            refused = asyncio.ensure_future(anonymous.get("/system/functions"))
            answer = await anonymous.post("/function/echo", content=b"hi")
            assert answer.status_code == 401, answer.text
            assert "error" in answer.json()
            answer = await admin.post("/function/echo", content=b"hi")
            assert (answer.status_code, answer.content) == (200, b"hi")
            assert (await anonymous.get("/healthz")).status_code == 401
            health = await admin.get("/healthz")
            assert (health.status_code, health.json()) == (200, {"status": "ok"})
            # The model protocols are served too: their methods are known before the document.
            answer = await anonymous.delete("/predictions/echo")
            assert answer.status_code == 405
            assert answer.headers["allow"] == "POST, OPTIONS"
            assert gateway.api.loaded is None  # all of the above without the FastAPI part
            assert not listed.done()
            assert not refused.done()
        finally:
            release.set()
        answer = await listed
        assert answer.status_code == 200, answer.text
        assert [entry["name"] for entry in answer.json()] == ["echo"]
        assert (await refused).status_code == 401
        unknown = await admin.get("/system/nothing-here")
        assert unknown.status_code == 404
        assert "no route" in unknown.json()["error"]
        document = (await admin.get("/openapi.json")).json()
        for path in ("/function/{name}", "/predictions/{model}", "/system/functions", "/healthz"):
            assert path in document["paths"]
