"""What the headers' deadline (HeaderTimeoutProtocol) costs on the hot path, in one run.

    .venv/bin/python bench/header_timeout.py [--duration 5] [--rounds 3] [--concurrency 1,64]

The direct echo app of bench/echo.py (FastAPI, `uvicorn --workers 2`, uvloop) is served
twice, side by side: with uvicorn's own httptools protocol, and with nuvem's
`HeaderTimeoutProtocol`, which `nuvem up` serves with. The direct app is used rather than
nuvem because it is several times faster: the same protocol cost is a larger share of its
time, so the comparison is the stricter one. wrk POSTs the echo body at each concurrency,
alternating between the two servers for `--rounds` rounds, each going first every other
round (so that whatever else the machine does falls on both); the table gives each round's
requests per second and the median ratio (with the deadline / without). A ratio near 1.00,
within the spread of the rounds, is "costs nothing".

On a busy machine wrk's rates swing more than any such cost, so the same comparison is also
made in this process, where only CPU time counts: each protocol parses `--requests` echo
requests fed to it on one connection and answers them through a minimal ASGI app, and the
table gives the CPU microseconds per request (median of the rounds) and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from rich import box
from rich.console import Console
from rich.table import Table
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from nuvem.gateway.header_timeout import HeaderTimeoutProtocol

sys.path.insert(0, str(Path(__file__).resolve().parent))
import echo  # direct_app, run_wrk, write_script, shared with bench/echo.py

PROTOCOLS = {
    "httptools": "httptools",
    "header deadline": "nuvem.gateway.header_timeout:HeaderTimeoutProtocol",
}
WARMUP_SECONDS = 2
REQUEST = (
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(echo.BODY), echo.BODY)
)

out = Console()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per server")
    parser.add_argument("--concurrency", default="1,64", help="comma-separated connections")
    parser.add_argument("--requests", type=int, default=20_000, help="per in-process round")
    return parser.parse_args(argv)


# -- in this process: CPU time only -----------------------------------------------------------


async def _answer(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": echo.BODY})


class _Transport(asyncio.Transport):
    """A connection that takes what is written and never closes by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": (echo.HOST, 40000), "sockname": (echo.HOST, 80)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _cpu_per_request(protocol: type[HttpToolsProtocol], requests: int) -> float:
    """CPU microseconds per request: parsed, answered by the app, the answer written."""
    config = Config(_answer, log_level="warning", lifespan="off")
    config.load()
    connection = protocol(config=config, server_state=ServerState(), app_state={})
    transport = _Transport()
    connection.connection_made(transport)
    started = time.process_time()
    for _ in range(requests):
        connection.data_received(REQUEST)
        # The app's task runs, answers, and the protocol is ready for the next request.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    spent = time.process_time() - started
    transport.close()
    connection.connection_lost(None)
    return spent / requests * 1e6


async def _cpu_table(rounds: int, requests: int) -> Table:
    classes: dict[str, type[HttpToolsProtocol]] = {
        "httptools": HttpToolsProtocol,
        "header deadline": HeaderTimeoutProtocol,
    }
    spent: dict[str, list[float]] = {name: [] for name in classes}
    for round_ in range(rounds):
        for name, protocol in list(classes.items())[:: 1 if round_ % 2 == 0 else -1]:
            spent[name].append(await _cpu_per_request(protocol, requests))
    plain, timed = (statistics.median(spent[name]) for name in classes)
    table = Table(title="in this process, CPU µs per request (median)", box=box.SIMPLE_HEAD)
    for column in (*classes, "ratio"):
        table.add_column(column, justify="right")
    table.add_row(f"{plain:.2f}", f"{timed:.2f}", f"{timed / plain:.3f}")
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        out.print("wrk is not installed (make system-deps)")
        return 2
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    table = Table(title="echo through the direct app, requests/s", box=box.SIMPLE_HEAD)
    for column in ("connections", *PROTOCOLS, "ratio (median)", "ratios per round"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="nuvem-header-timeout-") as folder:
        workdir = Path(folder)
        script = echo.write_script(workdir, "echo", None)
        with contextlib.ExitStack() as stack:
            urls = {
                name: stack.enter_context(echo.direct_app(workdir, http, name.replace(" ", "-")))
                for name, http in PROTOCOLS.items()
            }
            for concurrency in concurrencies:
                rates: dict[str, list[float]] = {name: [] for name in PROTOCOLS}
                for url in urls.values():
                    echo.run_wrk(wrk, url, script, concurrency, WARMUP_SECONDS)
                for round_ in range(args.rounds):
                    # Each goes first every other round: a machine getting busier or quieter
                    # during a round then weighs on both alike.
                    order = list(urls.items())[:: 1 if round_ % 2 == 0 else -1]
                    for name, url in order:
                        measured = echo.run_wrk(wrk, url, script, concurrency, args.duration)
                        rates[name].append(measured.requests_per_s)
                plain, timed = rates["httptools"], rates["header deadline"]
                ratios = [t / p for t, p in zip(timed, plain, strict=True)]
                table.add_row(
                    str(concurrency),
                    " / ".join(f"{r:.0f}" for r in plain),
                    " / ".join(f"{r:.0f}" for r in timed),
                    f"{statistics.median(ratios):.3f}",
                    " ".join(f"{r:.3f}" for r in ratios),
                )
    out.print(table)
    out.print(uvloop.run(_cpu_table(args.rounds, args.requests)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
