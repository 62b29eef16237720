"""Fixtures shared by every test: a real gateway on a free loopback port, real workers."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support import HANDLERS, Running, serving


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """asyncio for every async test; session-wide, so async fixtures may be module-scoped."""
    return "asyncio"


@pytest.fixture
def handlers_dir(tmp_path: Path) -> Path:
    """A copy of tests/handlers, for stacks to find their handlers in."""
    target = tmp_path / "app"
    shutil.copytree(HANDLERS, target)
    return target


@pytest.fixture
async def gateway(tmp_path: Path, handlers_dir: Path) -> AsyncIterator[Running]:
    async with serving(handlers_dir, tmp_path / "state") as running:
        yield running
