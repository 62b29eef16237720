"""Helpers for tests (importable as `support`: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import socket
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar, overload

import httpx
import uvicorn

from nuvem.config import Settings
from nuvem.control.deployment import Deployment
from nuvem.gateway.app import create_app
from nuvem.platform import Platform
from nuvem.stack.loader import load_stack_text
from nuvem.stack.stack import Stack

ADMIN_PASSWORD = "test-admin-password"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@overload
async def wait_until(
    condition: Callable[[], Awaitable[T]],
    within: float = 10.0,
    what: str | Callable[[], str] = "condition",
) -> T: ...


@overload
async def wait_until(
    condition: Callable[[], T], within: float = 10.0, what: str | Callable[[], str] = "condition"
) -> T: ...


async def wait_until(
    condition: Callable[[], object],
    within: float = 10.0,
    what: str | Callable[[], str] = "condition",
) -> object:
    """Poll `condition` (a function or a coroutine function) until it returns something
    truthy, and return that; fail the test after `within` seconds. `what` (or what it
    returns, asked only then) says in the failure what was awaited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            said = what if isinstance(what, str) else what()
            raise AssertionError(f"timed out after {within}s waiting for {said}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def serving(
    state_dir: Path, client_timeout: float = 30.0, stack: Stack | None = None
) -> AsyncIterator[tuple[Platform, str, httpx.AsyncClient]]:
    """A real gateway on a free loopback port: its platform, URL and an admin client."""
    settings = Settings(state_dir=state_dir, admin_password=ADMIN_PASSWORD, url="http://127.0.0.1")
    platform = Platform.create(settings, stack=stack, tick_interval=0.2)
    port = free_port()
    config = uvicorn.Config(
        create_app(platform), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, what="gateway started")
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(
            base_url=url, auth=("admin", ADMIN_PASSWORD), timeout=client_timeout
        ) as admin:
            yield platform, url, admin
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)


async def deploy_stack(
    platform: Platform, root: Path, stack_yaml: str, within: float
) -> list[Deployment]:
    """Deploy a stack written inline (resolved from `root`) and wait until each function has
    its replicas ready or has given up with an error; return the deployments."""
    stack = load_stack_text(textwrap.dedent(stack_yaml), "nuvem.yaml", root)
    deployments = [platform.controller.deploy(spec) for spec in stack.functions.values()]
    for deployment in deployments:
        await wait_until(
            functools.partial(_settled, deployment), within=within, what=f"{deployment.name} ready"
        )
    return deployments


def _settled(deployment: Deployment) -> bool:
    return len(deployment.ready()) >= deployment.desired or deployment.last_error is not None
