"""What the access log costs: echo throughput through the gateway with the access log off,
as JSON and as text, in one run.

    .venv/bin/python bench/access_log.py [--duration 3] [--concurrency 1,32] [--rounds 10]

Three `nuvem up` run side by side (bench/side_by_side.py), one per format (`--access-log
off|json|text`), each with only the example echo function (bench/echo.py starts it) and its
stderr going to a file, as it would to a journal. wrk calls them in short slices that take
turns; the table shows the median calls/s, the median of each round's ratio to off, and the
gateway's CPU time per call (formatting and writing the lines in the writer thread count:
it is the same process).

Before that, in this process and without the machine's noise (CPU time of the calling
thread, best of several runs): what a call pays with the log on, against writing the line at
once on the caller's thread through a logging handler (what the gateway did before the
queue), and what the writer thread then pays per line.

After the run every gateway is stopped cleanly and its log must hold one line per call wrk
counted (proof the lines were written, none lost on the way out) and no drop warning.

Goal: json and text at least 0.94 of off at every concurrency.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from echo import BenchError, err, nuvem, out
from rich import box
from rich.table import Table
from side_by_side import Runs, Target, add_arguments, render, run_rounds, slices, target

from nuvem.gateway.access_log import AccessEntry, AccessFormat, AccessLog, format_entry, key_id
from nuvem.gateway.line_sinks import StreamSink
from nuvem.security import new_api_key

GOAL_RATIO = 0.94
MARKER = {"off": None, "json": '"function":"echo"', "text": "function=echo"}


def access_lines(log: Path, marker: str) -> int:
    """How many access lines the gateway wrote to its log file."""
    with log.open(errors="replace") as lines:
        return sum(1 for line in lines if marker in line)


def check_logs(workdir: Path, calls: dict[str, int]) -> None:
    """Every call has its line, and nothing was dropped: read once the gateways stopped."""
    for form, marker in MARKER.items():
        log = workdir / f"{form}.log"
        if "access log dropped" in log.read_text(errors="replace"):
            raise BenchError(f"{form}: the access log dropped lines; see {log}")
        if marker is None:
            continue
        written = access_lines(log, marker)
        if written < calls[form]:
            raise BenchError(f"{form}: wrk counted {calls[form]} calls, {log} has {written} lines")


def in_process(form: AccessFormat, count: int = 20_000, repeat: int = 5) -> tuple[float, ...]:
    """µs per call: written at once through a logging handler; queued (the hot path); the
    writer thread's share (format and write), each the best of `repeat` runs."""
    with open(os.devnull, "w") as null:
        logger = logging.Logger("bench.access")
        handler = logging.StreamHandler(null)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        log = AccessLog(form, StreamSink(null), flush=3600.0)
        token = "Bearer " + new_api_key()[2]

        def entry() -> AccessEntry:
            return AccessEntry(
                time.time(),
                "echo",
                None,
                200,
                1.2345,
                os.urandom(16).hex(),
                os.urandom(16).hex(),
                key_id(token, None),
                "echo-1",
                "POST",
                "/function/echo",
            )

        best = [float("inf")] * 3
        for _ in range(repeat):
            entries = [entry() for _ in range(count)]  # ids made outside the timed part
            started = time.thread_time()
            for e in entries:
                logger.info(format_entry(e._replace(key_id=key_id(token, None)), form))
            at_once = time.thread_time() - started
            started = time.thread_time()
            for e in entries:
                log.write(e._replace(key_id=key_id(token, None)))
            queued = time.thread_time() - started
            started = time.thread_time()
            log.writer.flush()
            writer = time.thread_time() - started
            for slot, spent in enumerate((at_once, queued, writer)):
                best[slot] = min(best[slot], spent / count * 1e6)
        log.close()
    return tuple(best)


def in_process_table() -> Table:
    table = Table(box=box.SIMPLE_HEAVY, title="per call, in this process (CPU µs)")
    for column in ("access log", "written at once", "queued (hot path)", "writer thread"):
        table.add_column(column, justify="left" if column == "access log" else "right")
    for form in (AccessFormat.JSON, AccessFormat.TEXT):
        at_once, queued, writer = in_process(form)
        table.add_row(form.value, f"{at_once:.2f}", f"{queued:.2f}", f"{writer:.2f}")
    return table


def run(args: argparse.Namespace, wrk: str, workdir: Path) -> Runs:
    with contextlib.ExitStack() as stack, err.status("starting three gateways") as status:
        targets: dict[str, Target] = {}
        for form in MARKER:
            platform = stack.enter_context(nuvem(workdir, {"NUVEM_ACCESS_LOG": form}, name=form))
            targets[form] = target(workdir, form, platform)
        runs = run_rounds(wrk, targets, args, status)
    check_logs(workdir, runs.calls)
    return runs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        err.print("[red]wrk is not installed[/] (make system-deps)")
        return 2
    out.print(in_process_table())
    try:
        with tempfile.TemporaryDirectory(prefix="nuvem-bench-") as tmp:
            runs = run(args, wrk, Path(tmp))
    except BenchError as exc:
        err.print(f"[red]benchmark failed:[/] {exc}", highlight=False)
        return 1
    out.print(render(runs, "off", GOAL_RATIO, "echo with the access log off vs on", "access log"))
    for line in slices(runs):
        out.print(line, highlight=False)
    worst = runs.worst("off")
    out.print(
        f"goal: json and text at least {GOAL_RATIO:.0%} of off: "
        + ("[green]holds[/]" if worst >= GOAL_RATIO else f"[red]missed[/] (worst {worst:.3f})")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
