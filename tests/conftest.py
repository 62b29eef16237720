"""Fixtures shared by every test: a real gateway on a free loopback port, real workers."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from nuvem.platform import Platform
from support import deploy_stack, serving


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
        await deploy_stack(self.platform, self.root, stack_yaml, within=60)

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
    async with serving(tmp_path / "state") as (platform, url, admin):
        yield Running(platform, url, admin, handlers_dir)
