"""Fixtures shared by every test: a real gateway on a free loopback port, real workers."""

from __future__ import annotations

import asyncio
import shutil
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from nuvem.config import Settings
from nuvem.gateway.app import create_app
from nuvem.gateway.platform import Platform
from nuvem.spec.loader import load_stack_text
from support import free_port, wait_until

ADMIN_PASSWORD = "test-admin-password"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Running:
    """A gateway serving on a real socket, with admin and invoke clients."""

    platform: Platform
    url: str
    admin: httpx.AsyncClient
    root: Path

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30.0, **kwargs)  # type: ignore[arg-type]

    async def deploy(self, stack_yaml: str) -> None:
        stack = load_stack_text(textwrap.dedent(stack_yaml), "nuvem.yaml", self.root)
        for spec in stack.functions.values():
            self.platform.controller.deploy(spec)
        for name in stack.functions:
            deployment = self.platform.controller.get(name)
            await wait_until(
                lambda d=deployment: len(d.ready()) >= d.desired or d.last_error is not None,
                within=60,
                what=f"{name} ready",
            )

    async def invoke(self, name: str, body: bytes = b"", **kwargs: object) -> httpx.Response:
        return await self.admin.post(f"/function/{name}", content=body, **kwargs)  # type: ignore[arg-type]


HANDLERS = Path(__file__).parent / "handlers"


@pytest.fixture
def handlers_dir(tmp_path: Path) -> Path:
    target = tmp_path / "app"
    shutil.copytree(HANDLERS, target)
    return target


@pytest.fixture
async def gateway(tmp_path: Path, handlers_dir: Path) -> AsyncIterator[Running]:
    settings = Settings(
        state_dir=tmp_path / "state", admin_password=ADMIN_PASSWORD, url="http://127.0.0.1"
    )
    platform = Platform.create(settings, tick_interval=0.2)
    port = free_port()
    config = uvicorn.Config(
        create_app(platform), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, what="gateway started")
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(
        base_url=url, auth=("admin", ADMIN_PASSWORD), timeout=30.0
    ) as admin:
        yield Running(platform, url, admin, handlers_dir)
    server.should_exit = True
    await asyncio.wait_for(task, 60)
