"""Fixtures shared by every test: a real gateway on a free loopback port, real workers."""

from __future__ import annotations

import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import podman_images
import xdist_scopes
from support import HANDLERS, Running, serving


def _interrupt(signal_number: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal_number}")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (a CI runner's cancel, `kill`, `timeout`) ends the run as Ctrl-C does: the
    test's `finally` blocks and every fixture's teardown still stop what they started, where
    Python's default would exit at once and leave the servers running."""
    signal.signal(signal.SIGTERM, _interrupt)


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


# pytest-xdist (`make test` runs two workers, --dist loadgroup; tests/xdist_scopes.py): a
# module's tests run on one worker; the tests that share the session's Ray cluster run on
# one worker, which starts it once; so do those that build and run podman images, which
# would otherwise take both cores for minutes at a time.
_PODMAN_MODULES = frozenset(
    {
        "test_container_builds.py",
        "test_container_engines.py",
        "test_container_functions.py",
        "test_container_orphans.py",
        "test_container_registry.py",
        "test_containers.py",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("ray"))
        elif item.path.name in _PODMAN_MODULES:
            item.add_marker(pytest.mark.xdist_group("podman"))
    xdist_scopes.suffix_groups(config, items)
    _allow_the_first_image_build(items)


def _allow_the_first_image_build(items: list[pytest.Item]) -> None:
    """On a machine without the container tests' base image, whichever of them runs first
    makes it; those tests get the time that takes instead of the suite's 120 s, where the
    first one failed before (only on such a machine: elsewhere a hang still fails fast)."""
    users = [item for item in items if _uses_podman_images(item)]
    if users and not podman_images.base_ready():
        for item in users:
            item.add_marker(pytest.mark.timeout(podman_images.FIRST_BUILD_TIMEOUT))


def _uses_podman_images(item: pytest.Item) -> bool:
    module = getattr(item, "module", None)
    return module is not None and any(
        getattr(value, "__module__", None) == podman_images.__name__
        for value in vars(module).values()
    )


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return xdist_scopes.make_scheduler(config, log)
