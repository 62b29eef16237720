"""Async jobs: how fast a submit is accepted, and how many no-op jobs complete per second.

    .venv/bin/python bench/jobs.py [--duration 5] [--concurrency 1,4,16]
                                   [--backend embedded,servers]

For each backend a `nuvem up` gateway starts on a free loopback port with its state in a
temporary folder, serving a no-op function (two replicas, 32 async jobs at once). wrk (a
load generator in C, so the client costs little CPU) POSTs /async-function/noop from
`clients` connections for `duration` seconds; its latency percentiles are the accept
latencies (time to the 202). Completed jobs per second counts from the start of the load to
the moment no job is queued or running. `servers` starts redis-server and PostgreSQL (as
the tests do, see tests/servers.py) and points the gateway at them. The goal: p99 accept
under 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from rich import box
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the real-server starters the tests use
sys.path.insert(0, str(ROOT / "bench"))
import echo  # noqa: E402  (wrk's runner, its report and free ports, shared with bench/echo.py)

GOAL_P99_MS = 20.0
PASSWORD = "bench-admin-password"
HANDLER = "def noop(req):\n    return b''\n"
STACK = """
functions:
  noop:
    handler: functions:noop
    scaling: {min: 2, max: 2}
    max_inflight: 16
    jobs: {concurrency: 32}
"""
out = Console(width=120)  # the whole table, also when the output is not a terminal


@contextlib.contextmanager
def backend_env(name: str) -> Iterator[dict[str, str]]:
    if name == "embedded":
        yield {}
        return
    import servers

    if shutil.which("redis-server") is None or not (servers.PG_BIN / "postgres").exists():
        raise SystemExit(
            "the servers backend needs redis-server and PostgreSQL 15 (run `make system-deps`, "
            "set NUVEM_PG_BIN), or pass --backend embedded"
        )
    with servers.redis_server() as redis_url, servers.postgres_server() as pg_server:
        yield {
            "NUVEM_QUEUE_URL": redis_url,
            "NUVEM_RECORDS_URL": servers.fresh_database(pg_server),
        }


@contextlib.contextmanager
def gateway(env: dict[str, str]) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="nuvem-bench-jobs-") as folder:
        root = Path(folder)
        (root / "functions.py").write_text(HANDLER)
        (root / "nuvem.yaml").write_text(textwrap.dedent(STACK))
        port = echo.free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "nuvem.cli.main", "up", "-f", str(root / "nuvem.yaml"),
             "--port", str(port), "--log-level", "warning"],
            env={**os.environ, **env, "NUVEM_STATE_DIR": str(root / "state"),
                 "NUVEM_ADMIN_PASSWORD": PASSWORD},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    found = httpx.get(f"{url}/system/function/noop", auth=("admin", PASSWORD))
                    if found.json().get("availableReplicas", 0) >= 2:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the gateway did not start (exit {process.poll()})")
                time.sleep(0.1)  # a process starting: nothing to await here
            yield url
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def measure(wrk: str, url: str, seconds: int, clients: int, folder: Path) -> dict[str, float]:
    """wrk POSTs for `seconds`; then wait until every accepted job has completed."""
    script = folder / "submit.lua"
    token = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = "x"\nwrk.headers["Authorization"] = "Basic {token}"\n'
    )
    asyncio.run(drain(url))  # the previous run's jobs are done before this one starts
    started = time.perf_counter()
    result = echo.run_wrk(wrk, f"{url}/async-function/noop", script, clients, seconds)
    asyncio.run(drain(url))
    finished = time.perf_counter()
    return {
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "jobs": result.requests,
        "accepted_per_s": result.requests_per_s,
        "completed_per_s": result.requests / (finished - started),
    }


async def drain(url: str) -> None:
    """Wait until no job is queued or running."""
    async with httpx.AsyncClient(base_url=url, auth=("admin", PASSWORD), timeout=30) as http:
        while True:
            busy = 0
            for state in ("queued", "running"):
                busy += len((await http.get(f"/system/jobs?state={state}&limit=1")).json())
            if not busy:
                return
            await asyncio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per run")
    parser.add_argument("--concurrency", default="1,4,16", help="clients, comma-separated")
    parser.add_argument("--backend", default="embedded,servers")
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: run `make system-deps` (apt-get install wrk)")
    table = Table(box=box.SIMPLE_HEAD, title=f"no-op async jobs, {args.duration}s per run")
    for column in ("backend", "clients", "jobs", "accept p50 ms", "accept p99 ms",
                   "accepted/s", "completed/s", f"p99 < {GOAL_P99_MS:g} ms"):  # fmt: skip
        table.add_column(column, justify="right")
    for name in args.backend.split(","):
        with (
            backend_env(name) as env,
            gateway(env) as url,
            tempfile.TemporaryDirectory() as folder,
        ):
            for clients in (int(c) for c in args.concurrency.split(",")):
                result = measure(wrk, url, args.duration, clients, Path(folder))
                table.add_row(
                    name,
                    str(clients),
                    str(int(result["jobs"])),
                    f"{result['p50_ms']:.2f}",
                    f"{result['p99_ms']:.2f}",
                    f"{result['accepted_per_s']:.0f}",
                    f"{result['completed_per_s']:.0f}",
                    "yes" if result["p99_ms"] < GOAL_P99_MS else "NO",
                )
    out.print(table)


if __name__ == "__main__":
    main()
