"""A soak: a long run at about 80% of the measured maximum throughput; memory, open file
descriptors and latency must stay flat.

    .venv/bin/python bench/soak.py [--duration 600] [--load 0.8] [--json PATH] [--svg PATH]

`nuvem up` serves the example echo function on two replicas. First wrk (a load generator
in C) measures the maximum throughput briefly (closed loop, 32 connections). Then wrk
holds `--load` of that rate for `--duration` seconds in windows of 10 s (shorter for runs
under two minutes: a twelfth of the run): each of its connections waits between calls
(wrk's `delay()`), and the wait is corrected after each window so the rate stays on
target. In the middle of each window the RSS and open file descriptors of the gateway
and of each replica are read from /proc; each window's p99 latency comes from wrk.

Passes when, comparing the second tenth of the run with the last tenth (for the full 10
minutes: minute 2 and minute 10), every process's RSS and fd count grew by at most 10%
(fds: or by 2, whichever is more, as the counts are small); the median p99 of the windows
in the last third is at most 50% plus 0.5 ms above that of the first third (the first
window left out: warm-up); no replica was replaced, and no call failed (wrk counts
non-2xx answers and socket errors; any fails the run). Prints a table and writes an SVG plot
of RSS, fds and p99 over time (matplotlib is not a dependency of nuvem).

A window that a pause of the whole machine overlapped (a thread of this script not
scheduled for over a second: bench/pause_watch.py) is left out and done again, up to three
times; the pauses are printed and written to the JSON as `machine_paused_s`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
from rich import box
from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import echo  # noqa: E402  (nuvem up, wrk's runner and its report, shared with bench/echo.py)
from pause_watch import PauseWatch  # noqa: E402

CONNECTIONS = 16
MAX_CONNECTIONS = 32
REPLICAS = 2
GROWTH = 0.10  # RSS and fds: at most this much more at the end than early on
FD_SLACK = 2
P99_GROWTH = 0.5
P99_SLACK_MS = 0.5
MAX_VOIDED = 3  # windows measured across a pause of the machine, redone; more fail the run

out = Console(width=120)
err = Console(stderr=True)


@dataclasses.dataclass(slots=True)
class Sample:
    t: float  # seconds of measured load when this window ended (voided windows left out)
    rate: float  # calls per second wrk achieved in this window
    p99_ms: float
    rss_mib: dict[str, float]  # by process: gateway, replica-1, replica-2
    fds: dict[str, int]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise echo.BenchError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def replica_pids(platform: echo.Nuvem) -> list[int]:
    found = httpx.get(
        f"{platform.base}/system/function/{echo.FUNCTION}",
        auth=("admin", platform.admin_password),
        timeout=5,
    ).json()
    return sorted(r["pid"] for r in found["replicaList"] if r["state"] == "ready")


def gateway_pid(workdir: Path) -> int:
    """From the pid file `nuvem up` writes in its state folder (bench/echo.py names it)."""
    return int((workdir / "nuvem-state" / "nuvem.pid").read_text())


def script(folder: Path, api_key: str, delay_ms: float | None) -> Path:
    path = echo.write_script(folder, "soak", api_key)
    if delay_ms is not None:
        # Called before each request of a connection: the pause that sets the rate.
        path.write_text(path.read_text() + f"function delay()\n  return {delay_ms:.3f}\nend\n")
    return path


def window(
    wrk: str, url: str, path: Path, seconds: float, sample: Any
) -> tuple[echo.Measurement, Any]:
    """One wrk run of `seconds` at CONNECTIONS; `sample()` runs in its middle."""
    taken: list[Any] = []
    timer = threading.Timer(seconds / 2, lambda: taken.append(sample()))
    timer.start()
    try:
        measured = echo.run_wrk(wrk, url, path, CONNECTIONS, math.ceil(seconds))
    finally:
        timer.join()
    if not taken:
        raise echo.BenchError("the sample in the middle of a window failed")
    return measured, taken[0]


def window_seconds(duration: float) -> float:
    return min(10.0, duration / 12)


def verdict(samples: list[Sample], duration: float, replaced: bool) -> list[str]:
    """What failed: early is the second tenth of the run, late the last tenth."""
    early = [s for s in samples if duration / 10 < s.t <= 2 * duration / 10]
    late = [s for s in samples if s.t > duration - duration / 10]
    if not early or not late:
        return [f"too few samples ({len(samples)}) to compare early and late"]
    failed = []
    for name in samples[0].rss_mib:
        before = statistics.mean(s.rss_mib[name] for s in early)
        after = statistics.mean(s.rss_mib[name] for s in late)
        if after > before * (1 + GROWTH):
            failed.append(f"{name}: RSS grew from {before:.1f} to {after:.1f} MiB")
        fds_before = statistics.mean(s.fds[name] for s in early)
        fds_after = statistics.mean(s.fds[name] for s in late)
        if fds_after > fds_before + max(fds_before * GROWTH, FD_SLACK):
            failed.append(f"{name}: open fds grew from {fds_before:.0f} to {fds_after:.0f}")
    # p99 by the median of the windows in the first and the last third of the run: one window
    # slowed by another program on a shared machine is noise, a trend is drift.
    third = max(1, len(samples) // 3)
    p99_before = statistics.median(s.p99_ms for s in samples[1 : third + 1])
    p99_after = statistics.median(s.p99_ms for s in samples[-third:])
    if p99_after > p99_before * (1 + P99_GROWTH) + P99_SLACK_MS:
        failed.append(f"p99 drifted from {p99_before:.2f} to {p99_after:.2f} ms")
    if replaced:
        failed.append("a replica was replaced during the soak (it died)")
    return failed


def soak(
    duration: float, load: float, workdir: Path, progress: Any = None, notice: Any = None
) -> tuple[float, float, list[Sample], bool, list[float]]:
    """Measure the maximum, then hold `load` of it for `duration` s of windows; (max, target,
    samples, whether a replica was replaced, the pauses of the machine that voided a window).

    A window that a pause of the whole machine overlapped (see bench/pause_watch.py) is
    left out and done again, at most MAX_VOIDED times: `duration` counts measured load."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise echo.BenchError("wrk is not installed: run `make system-deps` (apt-get install wrk)")
    voided: list[float] = []

    def unpaused(measure: Any, watch: PauseWatch) -> Any:
        while True:
            begun = watch.clock()
            try:
                result = measure()
                error = None
            except echo.BenchError as exc:
                result, error = None, exc
            pause = watch.paused(begun, watch.clock())
            if not pause:
                if error is not None:
                    raise error
                return result
            voided.append(pause)
            if notice is not None:
                notice(pause, error)
            if len(voided) > MAX_VOIDED:
                raise echo.BenchError(
                    f"this machine paused {len(voided)} times (the load generator itself was "
                    f"not scheduled for {', '.join(f'{p:.1f}' for p in voided)} s): "
                    "run the soak on a machine that is not stopped by its host"
                )

    with echo.nuvem(workdir) as platform, PauseWatch() as watch:
        auth = ("admin", platform.admin_password)
        scaled = httpx.post(
            f"{platform.base}/system/scale-function/{echo.FUNCTION}",
            json={"replicas": REPLICAS},
            auth=auth,
            timeout=10,
        )
        if scaled.status_code >= 300:
            raise echo.BenchError(f"scaling to {REPLICAS}: {scaled.status_code} {scaled.text}")
        deadline = time.monotonic() + 120
        while len(pids := replica_pids(platform)) < REPLICAS:
            if time.monotonic() > deadline:
                raise echo.BenchError(f"{REPLICAS} replicas did not become ready")
            time.sleep(0.2)  # another process starting: nothing to await
        gateway = gateway_pid(workdir)
        closed = script(workdir, platform.api_key, None)
        echo.run_wrk(wrk, platform.url, closed, MAX_CONNECTIONS, 2)  # warm-up
        maximum = unpaused(
            lambda: echo.run_wrk(wrk, platform.url, closed, MAX_CONNECTIONS, 5).requests_per_s,
            watch,
        )
        target = maximum * load
        delay = CONNECTIONS * 1000 / target
        step = window_seconds(duration)
        names = {"gateway": gateway} | {f"replica-{i + 1}": p for i, p in enumerate(pids)}

        def sample() -> tuple[dict[str, float], dict[str, int]]:
            return (
                {name: rss_mib(pid) for name, pid in names.items()},
                {name: open_fds(pid) for name, pid in names.items()},
            )

        samples: list[Sample] = []
        loaded = 0.0
        while loaded < duration - step / 2:
            paced = script(workdir, platform.api_key, delay)
            measured, (rss, fds) = unpaused(
                lambda paced=paced: window(wrk, platform.url, paced, step, sample), watch
            )
            loaded += step
            samples.append(Sample(loaded, measured.requests_per_s, measured.p99_ms, rss, fds))
            if progress is not None:
                progress(samples[-1], target)
            # Correct the pause toward the target rate, halfway (the machine's noise is not a
            # trend), by at most a factor of 1.5 per window.
            delay *= min(1.5, max(0.67, (measured.requests_per_s / target) ** 0.5))
        replaced = replica_pids(platform) != pids
    return maximum, target, samples, replaced, voided


# -- the report ------------------------------------------------------------------------------


def render(samples: list[Sample], maximum: float, target: float) -> Table:
    table = Table(
        title=f"soak: {target:,.0f} calls/s (of a measured maximum of {maximum:,.0f})",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("t s", justify="right")
    table.add_column("calls/s", justify="right")
    table.add_column("p99 ms", justify="right")
    for name in samples[0].rss_mib:
        table.add_column(f"{name}\nRSS MiB", justify="right")
        table.add_column(f"{name}\nfds", justify="right")
    for s in samples:
        cells = [f"{s.t:.0f}", f"{s.rate:,.0f}", f"{s.p99_ms:.2f}"]
        for name in s.rss_mib:
            cells += [f"{s.rss_mib[name]:.1f}", str(s.fds[name])]
        table.add_row(*cells)
    return table


COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def svg(samples: list[Sample], title: str) -> str:
    """Three panels (RSS, fds, p99) over time, as plain SVG."""
    width, height, left, top, gap = 900, 200, 70, 40, 50
    panels: list[tuple[str, dict[str, list[float]]]] = [
        ("RSS (MiB)", {n: [s.rss_mib[n] for s in samples] for n in samples[0].rss_mib}),
        ("open fds", {n: [float(s.fds[n]) for s in samples] for n in samples[0].fds}),
        ("p99 latency (ms)", {"p99": [s.p99_ms for s in samples]}),
    ]
    times = [s.t for s in samples]
    t_max = max(times) or 1.0
    total = top + len(panels) * (height + gap)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + left + 160}" height="{total}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="{left}" y="20" font-size="15">{escape(title)}</text>',
    ]
    for index, (label, series) in enumerate(panels):
        y0 = top + index * (height + gap)
        v_max = max(max(v) for v in series.values()) * 1.1 or 1.0
        parts.append(
            f'<rect x="{left}" y="{y0}" width="{width}" height="{height}" fill="none" '
            'stroke="#999"/>'
        )
        parts.append(f'<text x="{left}" y="{y0 - 6}">{escape(label)}</text>')
        for tick in range(5):
            value = v_max * tick / 4
            y = y0 + height - height * tick / 4
            parts.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{value:.1f}</text>')
        for tick in range(6):
            x = left + width * tick / 5
            parts.append(
                f'<text x="{x}" y="{y0 + height + 15}" text-anchor="middle">'
                f"{t_max * tick / 5:.0f} s</text>"
            )
        for n, (name, values) in enumerate(series.items()):
            colour = COLOURS[n % len(COLOURS)]
            points = " ".join(
                f"{left + width * t / t_max:.1f},{y0 + height - height * v / v_max:.1f}"
                for t, v in zip(times, values, strict=True)
            )
            parts.append(
                f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
            parts.append(
                f'<text x="{left + width + 10}" y="{y0 + 15 + 16 * n}" fill="{colour}">'
                f"{escape(name)}</text>"
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--load", type=float, default=0.8, help="fraction of the maximum")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    parser.add_argument(
        "--svg", type=Path, default=Path("soak.svg"), metavar="PATH", help="the plot"
    )
    args = parser.parse_args(argv)
    if args.duration < 30:
        parser.error("--duration: give at least 30 seconds (the verdict compares tenths)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def progress(s: Sample, target: float) -> None:
        err.print(f"  {s.t:5.0f} s  {s.rate:7,.0f}/{target:,.0f} calls/s  p99 {s.p99_ms:.2f} ms")

    def notice(pause: float, error: echo.BenchError | None) -> None:
        failed = f" (it had failed: {str(error).splitlines()[0]})" if error is not None else ""
        err.print(
            f"  [yellow]this machine paused {pause:.1f} s[/] (the load generator itself was not "
            f"scheduled): the window is left out and done again{failed}",
            highlight=False,
        )

    try:
        with tempfile.TemporaryDirectory(prefix="nuvem-soak-") as folder:
            err.print("starting nuvem; measuring the maximum throughput")
            maximum, target, samples, replaced, voided = soak(
                args.duration, args.load, Path(folder), progress, notice
            )
    except echo.BenchError as exc:
        err.print(f"[red]soak failed:[/] {exc}", highlight=False)
        return 2
    out.print(render(samples, maximum, target))
    failed = verdict(samples, args.duration, replaced)
    title = f"nuvem soak: {target:,.0f} calls/s for {args.duration:.0f} s"
    args.svg.write_text(svg(samples, title))
    err.print(f"plot written to {args.svg}")
    if args.json is not None:
        document = {
            "duration_s": args.duration,
            "max_per_s": maximum,
            "target_per_s": target,
            "samples": [dataclasses.asdict(s) for s in samples],
            "replica_replaced": replaced,
            "machine_paused_s": voided,
            "failed": failed,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    for line in failed:
        out.print(f"[bold red]not flat:[/] {line}")
    if not failed:
        out.print("[bold green]memory, fds and p99 stayed flat[/]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
