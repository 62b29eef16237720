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
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import echo  # direct_app, run_wrk, write_script, shared with bench/echo.py

PROTOCOLS = {
    "httptools": "httptools",
    "header deadline": "nuvem.gateway.header_timeout:HeaderTimeoutProtocol",
}
WARMUP_SECONDS = 2

out = Console()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per server")
    parser.add_argument("--concurrency", default="1,64", help="comma-separated connections")
    return parser.parse_args(argv)


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
