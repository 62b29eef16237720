"""Gateways measured side by side: several `nuvem up` running at once, each configured one
way, called by wrk in short slices that take turns.

On a busy 2-core machine the echo throughput swings by 2x or more within a minute, so
configurations measured one after the other (a fresh gateway each, half a minute apart)
compare the machine's moods more than the configurations. Here a round measures every
configuration at each concurrency, in an order that rotates from round to round, and each
round gives a ratio to the baseline measured seconds apart; the verdict is the median of
those ratios. Each slice also reads the gateway process's CPU time (user + system, from
/proc), whose cost per call other load moves far less than throughput: a configuration's
cost is its difference to the baseline in microseconds per call.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from echo import Nuvem, _concurrency_list, _positive, measure, write_script
from rich import box
from rich.status import Status
from rich.table import Table

from nuvem.cli.server import PID_FILE


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """One running gateway: where wrk calls it, with which script, and its process."""

    url: str
    script: Path
    pid: int


@dataclasses.dataclass
class Runs:
    """Per (configuration, concurrency): each slice's calls/s and gateway CPU µs per call,
    and the calls wrk counted for each configuration over all slices and warm-ups."""

    rates: dict[tuple[str, int], list[float]] = dataclasses.field(default_factory=dict)
    cpu_us: dict[tuple[str, int], list[float]] = dataclasses.field(default_factory=dict)
    calls: dict[str, int] = dataclasses.field(default_factory=dict)

    def ratio(self, config: str, baseline: str, concurrency: int) -> float:
        """The median over rounds of config's calls/s over the baseline's in the same round."""
        pairs = zip(
            self.rates[(config, concurrency)], self.rates[(baseline, concurrency)], strict=True
        )
        return statistics.median(rate / base for rate, base in pairs)

    def worst(self, baseline: str) -> float:
        return min((self.ratio(config, baseline, c) for config, c in self.rates), default=1.0)


def target(workdir: Path, name: str, platform: Nuvem) -> Target:
    """The gateway `echo.nuvem(workdir, ..., name=name)` started."""
    pid = int((workdir / f"{name}-state" / PID_FILE).read_text())
    return Target(platform.url, write_script(workdir, name, platform.api_key), pid)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a side-by-side run: slice length, warm-up, concurrency, rounds."""
    parser.add_argument("--duration", type=_positive, default=3, help="seconds per slice")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up, once each")
    parser.add_argument("--concurrency", type=_concurrency_list, default=[1, 32])
    parser.add_argument("--rounds", type=_positive, default=10, help="turns of every config")


def run_rounds(
    wrk: str, targets: dict[str, Target], args: argparse.Namespace, status: Status
) -> Runs:
    """`interleave` with the options `add_arguments` defined, saying the round on `status`."""
    return interleave(
        wrk,
        targets,
        args.concurrency,
        args.rounds,
        args.duration,
        args.warmup,
        lambda n: status.update(f"round {n + 1}/{args.rounds}"),
    )


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time `pid` has used, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(targets: dict[str, Target], seconds: float) -> dict[str, float]:
    """Each gateway's CPU milliseconds per second with no calls, all measured over the same
    `seconds`: what a configuration costs by itself (sampling, exporting, streaming)."""
    before = {config: cpu_seconds(t.pid) for config, t in targets.items()}
    started = time.monotonic()
    time.sleep(seconds)
    spent = time.monotonic() - started
    return {
        config: (cpu_seconds(t.pid) - before[config]) / spent * 1e3 for config, t in targets.items()
    }


def interleave(
    wrk: str,
    targets: dict[str, Target],
    concurrency: list[int],
    rounds: int,
    seconds: int,
    warmup: int,
    on_round: Callable[[int], None] = lambda _: None,
) -> Runs:
    """Warm every target up once at each concurrency, then `rounds` rounds of slices."""
    runs = Runs(calls=dict.fromkeys(targets, 0))
    for config, target in targets.items():
        for c in concurrency:
            runs.rates[(config, c)], runs.cpu_us[(config, c)] = [], []
            if warmup > 0:
                runs.calls[config] += measure(wrk, target.url, target.script, c, warmup, 0).requests
    names = list(targets)
    for number in range(rounds):
        on_round(number)
        shift = number % len(names)
        order = names[shift:] + names[:shift]
        for c in concurrency:
            for config in order:
                target = targets[config]
                before = cpu_seconds(target.pid)
                m = measure(wrk, target.url, target.script, c, seconds, 0)
                used = cpu_seconds(target.pid) - before
                runs.rates[(config, c)].append(m.requests_per_s)
                runs.cpu_us[(config, c)].append(used / max(m.requests, 1) * 1e6)
                runs.calls[config] += m.requests
    return runs


def render(runs: Runs, baseline: str, goal: float, title: str, label: str) -> Table:
    """The table: per configuration and concurrency the median calls/s, the median ratio to
    the baseline (marked against `goal`), and the gateway's CPU per call."""
    table = Table(box=box.SIMPLE_HEAVY, title=title)
    columns = (label, "concurrency", "calls/s", f"vs {baseline}", "gateway CPU µs/call", "+µs")
    for column in columns:
        table.add_column(column, justify="left" if column == label else "right")
    for config, c in runs.rates:
        ratio = runs.ratio(config, baseline, c)
        mark = "" if config == baseline else ("[green]✓[/]" if ratio >= goal else "[red]✗[/]")
        cpu = statistics.median(runs.cpu_us[(config, c)])
        extra = cpu - statistics.median(runs.cpu_us[(baseline, c)])
        table.add_row(
            config,
            str(c),
            f"{statistics.median(runs.rates[(config, c)]):,.0f}",
            f"{ratio:.3f} {mark}",
            f"{cpu:.1f}",
            "" if config == baseline else f"{extra:+.1f}",
        )
    return table


def slices(runs: Runs) -> list[str]:
    """Each configuration's calls/s slice by slice, to see the noise the medians smooth."""
    return [
        f"  {config} c={c}: " + ", ".join(f"{rate:,.0f}" for rate in rates)
        for (config, c), rates in runs.rates.items()
    ]
