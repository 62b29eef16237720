"""Headless Chromium for the dashboard's browser tests, driven by Playwright.

Debian's `chromium` is used as it is (`playwright install` is never run): a missing one
fails the run under CI and skips the tests otherwise (`servers.missing`). Screenshots go to
`NUVEM_TEST_ARTIFACTS` (default `test-artifacts/`), under `ui/`. Loaded as a pytest plugin
(`-p browser` in pyproject.toml), so every test may ask for `chromium` and `ui_artifacts`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from servers import missing

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM = os.environ.get("NUVEM_CHROMIUM", "/usr/bin/chromium")
# Measured on Debian 12's chromium: no sandbox as root, no GPU, nothing fetched at start.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def artifacts_dir() -> Path:
    root = Path(os.environ.get("NUVEM_TEST_ARTIFACTS", "test-artifacts"))
    folder = root / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def ui_artifacts() -> Path:
    return artifacts_dir()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        missing(f"chromium ({CHROMIUM})", "run `make system-deps` or apt-get install chromium")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing("playwright", "run `make install`, or pip install playwright")
    return CHROMIUM


@pytest.fixture(scope="module")
async def chromium(chromium_path: str) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    # Playwright starts it on a fresh profile of its own (it refuses --user-data-dir here).
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=chromium_path, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()
