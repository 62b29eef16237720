"""Whether the dashboard stays smooth at 100 functions, in headless Chromium.

    .venv/bin/python bench/dashboard_browser.py [--functions 100] [--seconds 20]

A real gateway on a loopback socket with `--functions` functions on the in-process fake
runtime (no worker processes, so the machine's two cores go to the gateway and the
browser), under a steady load of calls spread over all of them. The overview page and then
one function's page stay open for `--seconds` each; Chromium's own counters (CDP
Performance.getMetrics) say how busy the page's main thread was, and a PerformanceObserver
counts long tasks (over 50 ms, the frames a person sees stutter). Goal: main thread busy
under 20% and no long task after the first second.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from playwright.async_api import Page, async_playwright

from browser import CHROMIUM, FLAGS
from nuvem.config import Settings
from nuvem.gateway.app import create_app
from nuvem.platform import Platform
from support import ADMIN_PASSWORD, PlatformEnvironments, echo_runtime, serve_asgi, spec

GOAL_BUSY = 0.20
OBSERVE_LONG_TASKS = """
window.__long = 0;
new PerformanceObserver((list) => { window.__long += list.getEntries().length; })
  .observe({ type: "longtask", buffered: false });
"""


async def load(url: str, names: list[str], stop: asyncio.Event) -> int:
    sent = 0
    async with httpx.AsyncClient(base_url=url, auth=("admin", ADMIN_PASSWORD)) as client:
        while not stop.is_set():
            await client.post(f"/function/{random.choice(names)}", content=b"x")
            sent += 1
    return sent


async def busy(page: Page, seconds: float) -> tuple[float, int]:
    """The share of `seconds` the page's main thread was busy, and its long tasks."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Performance.enable")

    async def task_seconds() -> float:
        metrics = (await cdp.send("Performance.getMetrics"))["metrics"]
        return float(next(m["value"] for m in metrics if m["name"] == "TaskDuration"))

    await page.wait_for_timeout(1000)  # the first snapshot draws everything once
    await page.evaluate(OBSERVE_LONG_TASKS)
    before = await task_seconds()
    await page.wait_for_timeout(seconds * 1000)
    spent = await task_seconds() - before
    return spent / seconds, int(await page.evaluate("window.__long"))


async def main(functions: int, seconds: float) -> int:
    state = Path(tempfile.mkdtemp(prefix="nuvem-bench-ui-"))
    settings = Settings(state_dir=state, admin_password=ADMIN_PASSWORD, url="http://127.0.0.1")
    platform = Platform.create(
        settings, runtime=echo_runtime(), environments=PlatformEnvironments()
    )
    names = [f"fn{i:03d}" for i in range(functions)]
    stop = asyncio.Event()
    app = create_app(platform)
    ticks: list[float] = []
    async with serve_asgi(app, lifespan="on") as url:
        for name in names:
            platform.controller.deploy(spec(name=name, scaling={"min": 1, "max": 3}))
        clients = [asyncio.create_task(load(url, names, stop)) for _ in range(4)]
        async with async_playwright() as driver:
            browser = await driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.goto(f"{url}/ui/login")
            await page.fill("#password", ADMIN_PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_selector(f"#functions tr[data-name={names[-1]}]")
            overview = await busy(page, seconds)
            ticks.append((await app.loaded()).state.sampler.seconds)
            await page.click(f"a[href='/ui/functions/{names[0]}']")
            await page.wait_for_selector("#fn-replicas tr[data-state=ready]")
            function = await busy(page, seconds)
            ticks.append((await app.loaded()).state.sampler.seconds)
            await browser.close()
        stop.set()
        sent = sum(await asyncio.gather(*clients))
    shutil.rmtree(state, ignore_errors=True)
    print(f"{functions} functions, {sent / (2 * seconds + 4):.0f} calls/s of load")
    print(f"the gateway's snapshot tick, as last measured: {max(ticks) * 1000:.1f} ms")
    ok = True
    for page_name, (share, long_tasks) in (("overview", overview), ("function", function)):
        print(f"{page_name}: main thread busy {share:.1%}, long tasks {long_tasks}")
        ok = ok and share < GOAL_BUSY and long_tasks == 0
    print(f"goal: busy < {GOAL_BUSY:.0%}, no long task: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--functions", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.functions, args.seconds)))
