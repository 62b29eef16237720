"""The dashboard in a real browser (headless Chromium) against a real gateway and workers:
sign in, watch a call move the counters and the chart, scale from the page and see the
replicas come up, create and revoke a key, page through events, jobs and nodes. Each page
is photographed into the test artefacts (test-artifacts/ui/, or NUVEM_TEST_ARTIFACTS)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from support import ADMIN_PASSWORD, HANDLERS, Running, serving

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

STACK = """
functions:
  echo:
    handler: 'handlers:echo'
    scaling: {min: 1, max: 3}
  describe: {handler: 'handlers:describe'}
  fail: {handler: 'handlers:fail'}
"""
WAIT_MS = 15_000


@pytest.fixture(scope="module")
async def dashboard(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    root = tmp_path_factory.mktemp("ui") / "app"
    shutil.copytree(HANDLERS, root)
    async with serving(root, root.parent / "state") as running:
        await running.deploy(STACK, started=True)
        yield running


@pytest.fixture(scope="module")
async def page(dashboard: Running, chromium: Browser) -> AsyncIterator[Page]:
    """One signed-in tab for the whole module, as a person would keep it open."""
    context = await chromium.new_context(viewport={"width": 1400, "height": 900})
    tab = await context.new_page()
    tab.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    await tab.goto(f"{dashboard.url}/ui")
    assert "/ui/login" in tab.url  # anonymous: the sign-in page first
    await tab.fill("#password", ADMIN_PASSWORD)
    await tab.click("button[type=submit]")
    await tab.wait_for_selector("#functions tr[data-name=echo]", timeout=WAIT_MS)
    yield tab
    await context.close()
    assert errors == [], errors


async def shot(page: Page, artifacts: Path, name: str) -> None:
    await page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


async def go(page: Page, href: str, ready: str) -> None:
    await page.click(f"a[href='{href}']")
    await page.wait_for_selector(ready, timeout=WAIT_MS)


async def number_at_least(page: Page, selector: str, at_least: float) -> None:
    await page.wait_for_function(
        "([sel, n]) => { const el = document.querySelector(sel);"
        " return el !== null && parseFloat(el.textContent) >= n; }",
        arg=[selector, at_least],
        timeout=WAIT_MS,
    )


async def test_a_call_moves_the_counters_and_the_chart(
    page: Page, dashboard: Running, ui_artifacts: Path
) -> None:
    await go(page, "/ui", "#functions tr[data-name=echo]")
    names = await page.eval_on_selector_all(
        "#functions tbody tr", "rows => rows.map(r => r.dataset.name)"
    )
    assert names == ["describe", "echo", "fail"]
    for _ in range(20):
        assert (await dashboard.invoke("echo", b"hello")).status_code == 200
    await number_at_least(page, "#functions tr[data-name=echo] td.calls", 20)
    await number_at_least(page, "#functions tr[data-name=echo] td.rps", 0.1)
    assert await page.text_content("#functions tr[data-name=echo] td.status") == "ready"
    await shot(page, ui_artifacts, "overview")
    await page.emulate_media(color_scheme="dark")  # the charts take their colours when drawn
    await go(page, "/ui", "#functions tr[data-name=echo]")
    await number_at_least(page, "#functions tr[data-name=echo] td.calls", 20)
    await shot(page, ui_artifacts, "overview-dark")
    await page.emulate_media(color_scheme="light")

    await go(page, "/ui/functions/echo", "#fn-replicas tr[data-state=ready]")
    # The calls/s chart's latest point counts the calls (the first value of data-last).
    await page.wait_for_function(
        "() => { const c = document.querySelector('[data-chart=\"calls/s\"]');"
        " return c && parseFloat((c.dataset.last || '0').split(',')[0]) > 0; }",
        timeout=WAIT_MS,
    )
    await page.wait_for_function(
        "() => document.querySelector('#fn-logs').textContent.includes('deployed echo')",
        timeout=WAIT_MS,
    )
    await shot(page, ui_artifacts, "function")


async def test_scale_from_the_page_and_see_the_replicas_come_up(
    page: Page, dashboard: Running, ui_artifacts: Path
) -> None:
    await go(page, "/ui", "#functions tr[data-name=echo]")
    await go(page, "/ui/functions/echo", "#fn-replicas tr[data-state=ready]")
    await page.fill("#scale-count", "3")
    await page.click("#scale-button")
    await page.wait_for_function(
        "() => document.querySelectorAll('#fn-replicas tr[data-state=ready]').length === 3",
        timeout=30_000,
    )
    assert len(dashboard.platform.controller.get("echo").ready()) == 3
    await page.wait_for_selector("#fn-decisions li[data-kind=scaled]", timeout=WAIT_MS)
    await shot(page, ui_artifacts, "function-scaled")
    # Outside the function's bounds the form itself refuses (the input carries them).
    await page.fill("#scale-count", "9")
    assert await page.eval_on_selector("#scale-count", "el => el.validity.rangeOverflow")


async def test_create_and_revoke_a_key(page: Page, dashboard: Running, ui_artifacts: Path) -> None:
    await go(page, "/ui/keys", "#key-form")
    await page.fill("#key-name", "from-the-browser")
    await page.fill("#key-functions", "echo")
    await page.fill("#key-rate", "50")
    await page.click("#key-create")
    key = (await page.text_content("#new-key", timeout=WAIT_MS)) or ""
    row = await page.wait_for_selector("#keys tr[data-state=active]", timeout=WAIT_MS)
    assert row is not None
    key_id = await row.get_attribute("data-key")
    async with httpx.AsyncClient(base_url=dashboard.url) as client:
        headers = {"Authorization": f"Bearer {key}"}
        assert (
            await client.post("/function/echo", content=b"x", headers=headers)
        ).status_code == 200
        assert (await client.post("/function/describe", headers=headers)).status_code == 403
        await shot(page, ui_artifacts, "keys")
        await page.click(f"button[data-revoke='{key_id}']")
        await page.wait_for_selector(
            f"#keys tr[data-key='{key_id}'][data-state=revoked]", timeout=WAIT_MS
        )
        assert (
            await client.post("/function/echo", content=b"x", headers=headers)
        ).status_code == 401


async def test_events_jobs_and_nodes(page: Page, dashboard: Running, ui_artifacts: Path) -> None:
    await go(page, "/ui/events", "#events-list li[data-kind=deployed]")
    await page.select_option("#events-kind", "scaled")
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#events-list li')]"
        ".every(li => li.dataset.kind === 'scaled')",
        timeout=WAIT_MS,
    )
    await page.select_option("#events-kind", "")
    await shot(page, ui_artifacts, "events")

    submitted = await dashboard.admin.post("/async-function/fail", content=b"x")
    job = submitted.headers["x-call-id"]
    await go(page, "/ui/jobs", "#jobs")
    await page.click("#job-tabs button[data-state=failed]")
    retry = f"#jobs tr[data-job='{job}'] button"
    await page.wait_for_selector(retry, timeout=WAIT_MS)  # the list refreshes every few steps
    assert await page.text_content(retry) == "retry"
    await page.click(retry)
    await page.wait_for_selector("#toast >> text=submitted job", timeout=WAIT_MS)
    await page.click("#job-tabs button[data-state=all]")
    await page.wait_for_function(
        "() => document.querySelectorAll('#jobs tr[data-job]').length >= 2", timeout=WAIT_MS
    )
    await shot(page, ui_artifacts, "jobs")

    await go(page, "/ui/nodes", "#nodes tr[data-node]")
    assert "alive" in (await page.text_content("#nodes tbody") or "")
    await shot(page, ui_artifacts, "nodes")

    await page.click("#logout")
    await page.wait_for_url("**/ui/login", timeout=WAIT_MS)
    await page.goto(f"{dashboard.url}/ui/keys")
    assert "/ui/login?next=/ui/keys" in page.url
