"""The gateway's HTTP client to a container replica: nuvem's pool against aiohttp, in one run.

    .venv/bin/python bench/http_client.py [--calls 4000] [--rounds 5] [--concurrency 1,32]

Both clients call the same server, bench/container_echo/server.py (the benchmark image's
echo, started here as a plain process on a free loopback port: no container, so only the
client differs), from this one process on uvloop, as the gateway does. A round runs each
client at each concurrency, in an order that rotates, for `--calls` calls; each slice reads
this process's CPU time (user + system), which other load on the machine moves far less
than calls/s. The verdict is the median over rounds of CPU µs per call, pool over aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import uvloop
from echo import BODY, HOST, BenchError, Server, _concurrency_list, _positive, err, free_port, out
from rich import box
from rich.table import Table

from nuvem.runtime.http_pool import HttpPool

SERVER = Path(__file__).resolve().parent / "container_echo" / "server.py"
HEADERS = [("content-type", "application/json"), ("x-call-id", "0123456789abcdef")]

Call = Callable[[], Awaitable[bytes]]


def pool_call(pool: HttpPool) -> Call:
    async def call() -> bytes:
        return (await pool.request("POST", "/", HEADERS, BODY)).body

    return call


def aiohttp_call(session: aiohttp.ClientSession, url: str) -> Call:
    async def call() -> bytes:
        async with session.request("POST", url, headers=HEADERS, data=BODY) as answer:
            return await answer.read()

    return call


async def slice_(call: Call, calls: int, concurrency: int) -> tuple[float, float]:
    """CPU µs per call and calls/s for `calls` calls, `concurrency` at a time."""
    left = calls

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            if await call() != BODY:
                raise BenchError("the echo answered something else than it was sent")

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / calls * 1e6, calls / wall


async def run(
    port: int, args: argparse.Namespace
) -> dict[tuple[str, int], list[tuple[float, float]]]:
    pool = HttpPool(HOST, port)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        auto_decompress=False,
    )
    clients = {
        "nuvem pool": pool_call(pool),
        "aiohttp": aiohttp_call(session, f"http://{HOST}:{port}/"),
    }
    found: dict[tuple[str, int], list[tuple[float, float]]] = {}
    try:
        for call in clients.values():  # warm-up: connections open, code paths hot
            await slice_(call, args.calls // 4, max(args.concurrency))
        for round_ in range(args.rounds):
            names = list(clients)
            names = names[round_ % len(names) :] + names[: round_ % len(names)]
            for concurrency in args.concurrency:
                for name in names:
                    measured = await slice_(clients[name], args.calls, concurrency)
                    found.setdefault((name, concurrency), []).append(measured)
    finally:
        await session.close()
        await pool.close()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=_positive, default=4000)
    parser.add_argument("--rounds", type=_positive, default=5)
    parser.add_argument("--concurrency", type=_concurrency_list, default=[1, 32])
    args = parser.parse_args(argv)
    port = free_port()
    log = Path(f"/tmp/nuvem-bench-http-client-{port}.log")
    server = Server("echo server", [sys.executable, str(SERVER)], {"PORT": str(port)}, log)
    try:
        url = f"http://{HOST}:{port}/"
        server.wait_until("an answer", lambda: httpx.post(url, content=BODY).content == BODY, 30)
        found = uvloop.run(run(port, args))
    finally:
        server.stop()
        log.unlink(missing_ok=True)
    table = Table(
        box=box.SIMPLE_HEAD, title="HTTP client to a container: CPU per call in the caller"
    )
    for column in ("client", "concurrency", "CPU µs/call", "vs aiohttp", "calls/s"):
        table.add_column(column, justify="right")
    for (name, concurrency), values in sorted(
        found.items(), key=lambda item: (item[0][1], item[0][0])
    ):
        base = found[("aiohttp", concurrency)]
        ratio = statistics.median(
            mine[0] / theirs[0] for mine, theirs in zip(values, base, strict=True)
        )
        table.add_row(
            name,
            str(concurrency),
            f"{statistics.median(v[0] for v in values):.1f}",
            f"{ratio:.2f}",
            f"{statistics.median(v[1] for v in values):,.0f}",
        )
    out.print(table)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        err.print(f"[red]{error}[/]")
        sys.exit(2)
