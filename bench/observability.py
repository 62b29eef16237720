"""What watching the platform costs: echo throughput with InfluxDB export on, and with the
web dashboard open and streaming, against the same gateway without either, in one run.

    .venv/bin/python bench/observability.py [--duration 8] [--concurrency 1,32] [--rounds 2]

Each configuration is a fresh `nuvem up` with only the example echo function (bench/echo.py
starts it), measured with wrk at each concurrency after a warm-up. The configurations take
turns, round after round, so a drift of the machine (another process, thermal) spreads over
all of them; each one's calls/s is the median of its rounds.

- plain:     no export, nobody watching
- influx:    InfluxDB export to a real influxd (Debian's `influxdb`), every second (ten
             times more often than the default 10 s, to make its cost visible)
- dashboard: VIEWERS browser tabs' worth of /ui/stream server-sent-event streams open,
             logged in with the dashboard's session cookie
- both:      influx and dashboard together

Goal (issue 14): every configuration within 5% of plain, i.e. a ratio of at least 0.95.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from echo import (
    HOST,
    BenchError,
    Nuvem,
    _concurrency_list,
    _positive,
    err,
    free_port,
    measure,
    nuvem,
    out,
    write_script,
)
from rich import box
from rich.table import Table

GOAL_RATIO = 0.95
VIEWERS = 3
DATABASE = "nuvem"
CONFIGS = ("plain", "influx", "dashboard", "both")


# -- influxd -----------------------------------------------------------------------------------


@contextlib.contextmanager
def influxd(workdir: Path) -> Iterator[str]:
    """A real influxd on a free loopback port with a `nuvem` database; its URL."""
    binary = shutil.which("influxd")
    if binary is None:
        raise BenchError("influxd is not installed (make system-deps, or apt-get install influxdb)")
    folder = workdir / "influxdb"
    folder.mkdir()
    port = free_port()
    config = folder / "influxdb.conf"
    config.write_text(
        f'reporting-disabled = true\nbind-address = "{HOST}:{free_port()}"\n'
        f'[meta]\n  dir = "{folder / "meta"}"\n'
        f'[data]\n  dir = "{folder / "data"}"\n  wal-dir = "{folder / "wal"}"\n'
        "  query-log-enabled = false\n[monitor]\n  store-enabled = false\n"
        f'[http]\n  bind-address = "{HOST}:{port}"\n  log-enabled = false\n'
    )
    url = f"http://{HOST}:{port}"
    with (folder / "influxd.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, "-config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ping", timeout=2).status_code == 204:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"influxd did not start; see {folder / 'influxd.log'}")
            time.sleep(0.1)
        httpx.post(f"{url}/query", data={"q": f"CREATE DATABASE {DATABASE}"}).raise_for_status()
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def points_in(url: str) -> int:
    """How many invocation points influxd holds: proof that the export really ran."""
    answer = httpx.post(
        f"{url}/query",
        data={"db": DATABASE, "q": "SELECT count(value) FROM gateway_function_invocation_total"},
    ).json()
    series = answer["results"][0].get("series") or [{"values": [[0, 0]]}]
    return int(series[0]["values"][0][1])


# -- dashboard viewers -------------------------------------------------------------------------


@dataclass
class Viewers:
    """Browser tabs' worth of live dashboard streams; counts the events they received."""

    events: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def open(self, platform: Nuvem, count: int) -> None:
        for _ in range(count):
            thread = threading.Thread(target=self._watch, args=(platform,), daemon=True)
            thread.start()
            self._threads.append(thread)
        deadline = time.monotonic() + 20
        while self.events < count and not self.errors:
            if time.monotonic() > deadline:
                raise BenchError("the dashboard streams sent nothing within 20 s")
            time.sleep(0.05)
        if self.errors:
            raise BenchError(f"a dashboard stream failed: {self.errors[0]}")

    def _watch(self, platform: Nuvem) -> None:
        try:
            with httpx.Client(base_url=platform.base, timeout=10.0) as client:
                login = client.post("/ui/login", data={"password": platform.admin_password})
                if login.status_code >= 400:
                    raise BenchError(f"dashboard login: {login.status_code} {login.text}")
                with client.stream("GET", "/ui/stream", timeout=None) as stream:
                    for line in stream.iter_lines():
                        if self._stop.is_set():
                            return
                        if line.startswith("data:"):
                            self.events += 1
        except Exception as exc:  # reported by open(), or as the run's events count
            if not self._stop.is_set():
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Result:
    config: str
    concurrency: int
    rates: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def p50(self) -> float:
        return statistics.median(self.p50s)


def run_config(
    config: str,
    workdir: Path,
    influx_url: str,
    args: argparse.Namespace,
    wrk: str,
    results: dict[tuple[str, int], Result],
    notes: dict[str, str],
) -> None:
    env: dict[str, str] = {}
    if config in ("influx", "both"):
        env = {
            "NUVEM_INFLUXDB_URL": influx_url,
            "NUVEM_INFLUXDB_DATABASE": DATABASE,
            "NUVEM_INFLUXDB_INTERVAL": "1s",
        }
    before = points_in(influx_url)
    viewers = Viewers()
    with nuvem(workdir, env, name=config) as platform:
        if config in ("dashboard", "both"):
            viewers.open(platform, VIEWERS)
        script = write_script(workdir, config, platform.api_key)
        try:
            for c in args.concurrency:
                m = measure(wrk, platform.url, script, c, args.duration, args.warmup)
                result = results.setdefault((config, c), Result(config, c))
                result.rates.append(m.requests_per_s)
                result.p50s.append(m.p50_ms)
        finally:
            viewers.close()
    if viewers.errors:
        raise BenchError(f"{config}: a dashboard stream failed: {viewers.errors[0]}")
    if config in ("dashboard", "both"):
        notes[config] = f"{viewers.events} stream events"
    if config in ("influx", "both"):
        written = points_in(influx_url) - before
        if written <= 0:
            raise BenchError(f"{config}: the export wrote no invocation points to influxd")
        notes[config] = (notes.get(config, "") + f"; {written} points in influxd").lstrip("; ")


def render(results: dict[tuple[str, int], Result], concurrency: list[int]) -> Table:
    table = Table(box=box.SIMPLE_HEAVY, title="echo with observability on vs off")
    for column in ("configuration", "concurrency", "calls/s (median)", "p50 ms", "vs plain"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for config in CONFIGS:
        for c in concurrency:
            result = results.get((config, c))
            if result is None:
                continue
            ratio = result.rate / results[("plain", c)].rate
            mark = (
                "" if config == "plain" else ("[green]✓[/]" if ratio >= GOAL_RATIO else "[red]✗[/]")
            )
            table.add_row(
                config, str(c), f"{result.rate:,.0f}", f"{result.p50:.2f}", f"{ratio:.3f} {mark}"
            )
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=_positive, default=8, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run")
    parser.add_argument("--concurrency", type=_concurrency_list, default=[1, 32])
    parser.add_argument("--rounds", type=_positive, default=2, help="turns of every configuration")
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help=f"a subset of {','.join(CONFIGS)}"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    if "plain" not in configs or any(c not in CONFIGS for c in configs):
        err.print(f"--configs must include plain and name only {', '.join(CONFIGS)}")
        return 2
    wrk = shutil.which("wrk")
    if wrk is None:
        err.print("[red]wrk is not installed[/] (make system-deps)")
        return 2
    results: dict[tuple[str, int], Result] = {}
    notes: dict[str, str] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="nuvem-bench-") as tmp, err.status("") as status:
            workdir = Path(tmp)
            with influxd(workdir) as influx_url:
                for round_number in range(1, args.rounds + 1):
                    for config in configs:
                        status.update(f"round {round_number}/{args.rounds}: {config}")
                        run_dir = workdir / f"{config}-{round_number}"
                        run_dir.mkdir()
                        run_config(config, run_dir, influx_url, args, wrk, results, notes)
    except BenchError as exc:
        err.print(f"[red]benchmark failed:[/] {exc}", highlight=False)
        return 1
    out.print(render(results, args.concurrency))
    for config, note in notes.items():
        out.print(f"  {config}: {note}", highlight=False)
    worst = min(
        (r.rate / results[("plain", r.concurrency)].rate for r in results.values()),
        default=1.0,
    )
    held = worst >= GOAL_RATIO
    out.print(
        f"goal: every configuration at least {GOAL_RATIO:.0%} of plain: "
        + ("[green]holds[/]" if held else f"[red]missed[/] (worst ratio {worst:.3f})")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
