"""What the access log costs: echo throughput through the gateway with the access log off,
as JSON and as text, in one run.

    .venv/bin/python bench/access_log.py [--duration 3] [--concurrency 1,32] [--rounds 10]

Three `nuvem up` run side by side (bench/side_by_side.py), one per format (`--access-log
off|json|text`), each with only the example echo function (bench/echo.py starts it) and its
stderr going to a file, as it would to a journal. wrk calls them in short slices that take
turns; the table shows the median calls/s, the median of each round's ratio to off, and the
gateway's CPU time per call (formatting and writing the lines in the writer thread count:
it is the same process).

After the run every gateway is stopped cleanly and its log must hold one line per call wrk
counted (proof the lines were written, none lost on the way out) and no drop warning.

Goal: json and text at least 0.94 of off at every concurrency.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

from echo import BenchError, _concurrency_list, _positive, err, nuvem, out, write_script
from side_by_side import Runs, Target, interleave, render, slices

from nuvem.cli.server import PID_FILE

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


def run(args: argparse.Namespace, wrk: str, workdir: Path) -> Runs:
    with contextlib.ExitStack() as stack, err.status("starting three gateways") as status:
        targets: dict[str, Target] = {}
        for form in MARKER:
            platform = stack.enter_context(nuvem(workdir, {"NUVEM_ACCESS_LOG": form}, name=form))
            pid = int((workdir / f"{form}-state" / PID_FILE).read_text())
            targets[form] = Target(platform.url, write_script(workdir, form, platform.api_key), pid)
        runs = interleave(
            wrk,
            targets,
            args.concurrency,
            args.rounds,
            args.duration,
            args.warmup,
            lambda n: status.update(f"round {n + 1}/{args.rounds}"),
        )
    check_logs(workdir, runs.calls)
    return runs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=_positive, default=3, help="seconds per slice")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up, once each")
    parser.add_argument("--concurrency", type=_concurrency_list, default=[1, 32])
    parser.add_argument("--rounds", type=_positive, default=10, help="turns of every format")
    return parser.parse_args(argv)


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
