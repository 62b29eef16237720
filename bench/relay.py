"""What a node's container relay costs: calls through it against calls straight to the server.

    .venv/bin/python bench/relay.py [--calls 4000] [--rounds 5] [--concurrency 1,32]

The server is bench/container_echo/server.py (the benchmark image's echo, as a plain
process on a free loopback port: the relay's cost does not depend on what runs behind it).
The relay is `ContainerRelay` in a process of its own on plain asyncio, as it runs in a
node's `ContainerActor`, listening on 127.0.0.1 and relaying to the echo's port. The
caller is this process on uvloop with nuvem's pool, as the gateway calls: "direct" to the
echo's port, "relay" to the relay's with the replica's signed preamble on each new
connection. A round runs both at each concurrency, in an order that rotates; the verdict
is the median over rounds of calls/s, relay over direct, the p50 each call took, and the
relay process's CPU time per call (from /proc: steadier than calls/s on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import uvloop
from echo import BODY, HOST, BenchError, Server, _concurrency_list, _positive, err, free_port, out
from rich import box
from rich.table import Table

from nuvem.cluster.container_relay import ContainerRelay
from nuvem.cluster.relay_preamble import signer
from nuvem.runtime.http_pool import HttpPool

SERVER = Path(__file__).resolve().parent / "container_echo" / "server.py"
HEADERS = [("content-type", "application/json"), ("x-call-id", "0123456789abcdef")]
REPLICA = "bench-echo-1"


async def serve_relay(port: int, target: int, secret: bytes) -> None:
    """The relay's process: listen on `port` until killed."""
    relay = ContainerRelay(secret, REPLICA, target, lambda text: print(text, flush=True))
    await relay.start(HOST, port)
    print("relaying", flush=True)
    await asyncio.Event().wait()


async def slice_(pool: HttpPool, calls: int, concurrency: int) -> tuple[float, float]:
    """calls/s and the p50 of one call in ms, for `calls` calls, `concurrency` at a time."""
    left = calls
    took: list[float] = []

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            start = time.perf_counter()
            answer = await pool.request("POST", "/", HEADERS, BODY)
            took.append(time.perf_counter() - start)
            if answer.body != BODY:
                raise BenchError(f"the echo answered {answer.status} {answer.body[:200]!r}")

    wall = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    wall = time.perf_counter() - wall
    return calls / wall, statistics.median(took) * 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(
    direct: int, relayed: int, secret: bytes, relay_pid: int, args: argparse.Namespace
) -> tuple[dict[tuple[str, int], list[tuple[float, float]]], dict[int, list[float]]]:
    pools = {
        "direct": HttpPool(HOST, direct),
        "relay": HttpPool(HOST, relayed, preamble=signer(secret, REPLICA)),
    }
    found: dict[tuple[str, int], list[tuple[float, float]]] = {}
    relay_cpu: dict[int, list[float]] = {}  # concurrency -> µs per call
    try:
        for pool in pools.values():  # warm-up: connections open, code paths hot
            await slice_(pool, args.calls // 4, max(args.concurrency))
        for round_ in range(args.rounds):
            names = list(pools)
            names = names[round_ % len(names) :] + names[: round_ % len(names)]
            for concurrency in args.concurrency:
                for name in names:
                    before = cpu_seconds(relay_pid)
                    measured = await slice_(pools[name], args.calls, concurrency)
                    found.setdefault((name, concurrency), []).append(measured)
                    if name == "relay":
                        used = (cpu_seconds(relay_pid) - before) / args.calls * 1e6
                        relay_cpu.setdefault(concurrency, []).append(used)
    finally:
        for pool in pools.values():
            await pool.close()
    return found, relay_cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=_positive, default=4000)
    parser.add_argument("--rounds", type=_positive, default=5)
    parser.add_argument("--concurrency", type=_concurrency_list, default=[1, 32])
    parser.add_argument("--serve-relay", nargs=3, metavar=("PORT", "TARGET", "SECRET"))
    args = parser.parse_args(argv)
    if args.serve_relay:
        port, target, secret = args.serve_relay
        asyncio.run(serve_relay(int(port), int(target), bytes.fromhex(secret)))
        return 0
    direct, relayed = free_port(), free_port()
    secret = os.urandom(32)
    logs = [Path(f"/tmp/nuvem-bench-relay-{direct}-{n}.log") for n in range(2)]
    server = Server("echo server", [sys.executable, str(SERVER)], {"PORT": str(direct)}, logs[0])
    relay = Server(
        "relay",
        [sys.executable, __file__, "--serve-relay", str(relayed), str(direct), secret.hex()],
        dict(os.environ),
        logs[1],
    )
    try:
        url = f"http://{HOST}:{direct}/"
        server.wait_until("an answer", lambda: httpx.post(url, content=BODY).content == BODY, 30)
        relay.wait_until("the relay", lambda: "relaying" in logs[1].read_text(), 30)
        found, relay_cpu = uvloop.run(run(direct, relayed, secret, relay.process.pid, args))
    finally:
        relay.stop()
        server.stop()
        for log in logs:
            log.unlink(missing_ok=True)
    table = Table(box=box.SIMPLE_HEAD, title="HTTP to a container: through the relay vs direct")
    columns = ("path", "concurrency", "calls/s", "vs direct", "p50 ms", "added p50 ms", "relay CPU")
    for column in columns:
        table.add_column(column, justify="right")
    for (name, concurrency), values in sorted(
        found.items(), key=lambda item: (item[0][1], item[0][0])
    ):
        base = found[("direct", concurrency)]
        ratio = statistics.median(
            mine[0] / theirs[0] for mine, theirs in zip(values, base, strict=True)
        )
        added = statistics.median(
            mine[1] - theirs[1] for mine, theirs in zip(values, base, strict=True)
        )
        table.add_row(
            name,
            str(concurrency),
            f"{statistics.median(v[0] for v in values):,.0f}",
            f"{ratio:.2f}",
            f"{statistics.median(v[1] for v in values):.3f}",
            f"{added:+.3f}",
            f"{statistics.median(relay_cpu[concurrency]):.0f} µs/call" if name == "relay" else "",
        )
    out.print(table)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        err.print(f"[red]{error}[/]")
        sys.exit(2)
