"""What the access log costs: echo throughput through the gateway with the access log off,
as JSON and as text, in one run.

    .venv/bin/python bench/access_log.py [--duration 3] [--concurrency 1,32] [--rounds 8]

Three `nuvem up` run side by side, one per format (`--access-log off|json|text`), each with
only the example echo function (bench/echo.py starts it) and its stderr going to a file, as
it would to a journal. wrk then calls them in short slices, taking turns: a round measures
every format at each concurrency, in an order that rotates from round to round, so the
three share whatever else the machine is doing (on a busy 2-core machine that swings the
throughput by 2x or more within a minute). Each round gives a ratio of each format to off
measured seconds apart; the table shows the median of those ratios, and of the rates. It
also shows the gateway process's CPU time per call (user + system, from /proc, over each
slice), which other load on the machine moves far less than throughput: the access log's
cost is the difference to off, in microseconds per call.

After the run every gateway is stopped cleanly and its log must hold one line per call wrk
counted (proof the lines were written, none lost on the way out) and no drop warning.

Goal: json and text at least 0.94 of off at every concurrency.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from echo import (
    BenchError,
    Nuvem,
    _concurrency_list,
    _positive,
    err,
    measure,
    nuvem,
    out,
    write_script,
)
from rich import box
from rich.table import Table

from nuvem.cli.server import PID_FILE

GOAL_RATIO = 0.94
FORMS = ("off", "json", "text")
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


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time `pid` has used, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median_ratio(rates: dict[str, list[float]], form: str) -> float:
    return statistics.median(r / off for r, off in zip(rates[form], rates["off"], strict=True))


def render(runs: Runs, concurrency: list[int]) -> Table:
    table = Table(box=box.SIMPLE_HEAVY, title="echo with the access log off vs on")
    columns = ("access log", "concurrency", "calls/s", "vs off", "gateway CPU µs/call", "vs off")
    for column in columns:
        table.add_column(column, justify="left" if column == "access log" else "right")
    for form in FORMS:
        for c in concurrency:
            ratio = median_ratio({f: runs.rates[(f, c)] for f in FORMS}, form)
            mark = "" if form == "off" else ("[green]✓[/]" if ratio >= GOAL_RATIO else "[red]✗[/]")
            cpu = statistics.median(runs.cpu_us[(form, c)])
            extra = cpu - statistics.median(runs.cpu_us[("off", c)])
            table.add_row(
                form,
                str(c),
                f"{statistics.median(runs.rates[(form, c)]):,.0f}",
                f"{ratio:.3f} {mark}",
                f"{cpu:.1f}",
                "" if form == "off" else f"{extra:+.1f}",
            )
    return table


@dataclasses.dataclass
class Runs:
    """Per (format, concurrency): each slice's calls/s and the gateway's CPU µs per call."""

    rates: dict[tuple[str, int], list[float]] = dataclasses.field(default_factory=dict)
    cpu_us: dict[tuple[str, int], list[float]] = dataclasses.field(default_factory=dict)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=_positive, default=3, help="seconds per slice")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up, once each")
    parser.add_argument("--concurrency", type=_concurrency_list, default=[1, 32])
    parser.add_argument("--rounds", type=_positive, default=8, help="turns of every format")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, wrk: str, workdir: Path) -> Runs:
    runs = Runs()
    for form in FORMS:
        for c in args.concurrency:
            runs.rates[(form, c)], runs.cpu_us[(form, c)] = [], []
    calls = dict.fromkeys(FORMS, 0)
    with contextlib.ExitStack() as stack, err.status("starting three gateways") as status:
        started: dict[str, Nuvem] = {
            form: stack.enter_context(nuvem(workdir, {"NUVEM_ACCESS_LOG": form}, name=form))
            for form in FORMS
        }
        scripts = {form: write_script(workdir, form, p.api_key) for form, p in started.items()}
        pids = {form: int((workdir / f"{form}-state" / PID_FILE).read_text()) for form in FORMS}
        for form, platform in started.items():
            for c in args.concurrency if args.warmup > 0 else []:
                warm = measure(wrk, platform.url, scripts[form], c, args.warmup, 0)
                calls[form] += warm.requests
        for round_number in range(args.rounds):
            status.update(f"round {round_number + 1}/{args.rounds}")
            shift = round_number % len(FORMS)
            order = FORMS[shift:] + FORMS[:shift]
            for c in args.concurrency:
                for form in order:
                    before = cpu_seconds(pids[form])
                    m = measure(wrk, started[form].url, scripts[form], c, args.duration, 0)
                    used = cpu_seconds(pids[form]) - before
                    runs.rates[(form, c)].append(m.requests_per_s)
                    runs.cpu_us[(form, c)].append(used / max(m.requests, 1) * 1e6)
                    calls[form] += m.requests
    check_logs(workdir, calls)
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        err.print("[red]wrk is not installed[/] (make system-deps)")
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="nuvem-bench-") as tmp:
            runs = run(args, wrk, Path(tmp))
    except BenchError as exc:
        err.print(f"[red]benchmark failed:[/] {exc}", highlight=False)
        return 1
    out.print(render(runs, args.concurrency))
    for (form, c), found in runs.rates.items():
        out.print(f"  {form} c={c}: " + ", ".join(f"{r:,.0f}" for r in found), highlight=False)
    worst = min(
        median_ratio({f: runs.rates[(f, c)] for f in FORMS}, form)
        for form in FORMS
        for c in args.concurrency
    )
    out.print(
        f"goal: json and text at least {GOAL_RATIO:.0%} of off: "
        + ("[green]holds[/]" if worst >= GOAL_RATIO else f"[red]missed[/] (worst {worst:.3f})")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
