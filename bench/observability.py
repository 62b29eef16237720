"""What watching the platform costs: echo throughput with InfluxDB export on, and with the
web dashboard open and streaming, against the same gateway without either, in one run.

    .venv/bin/python bench/observability.py [--duration 3] [--concurrency 1,32] [--rounds 10]

Each configuration is a `nuvem up` of its own with only the example echo function
(bench/echo.py starts it); the four run side by side (bench/side_by_side.py) and wrk calls
them in short slices that take turns, so the machine's swings land on all of them alike.
The table shows the median calls/s, the median of each round's ratio to plain, and the
gateway's CPU time per call (the export's sampling thread and the dashboard's ticks count:
they are the same process). Before the calls, each gateway's CPU time a second while idle,
over the same 10 s, shows what watching costs by itself, free of the slices' noise.

- plain:     no export, nobody watching
- influx:    InfluxDB export to a real influxd (Debian's `influxdb`), every second (ten
             times more often than the default 10 s, to make its cost visible), into a
             database of its own
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
    err,
    free_port,
    nuvem,
    out,
)
from side_by_side import (
    Runs,
    Target,
    add_arguments,
    idle_cpu,
    render,
    run_rounds,
    slices,
    target,
)

GOAL_RATIO = 0.95
VIEWERS = 3
IDLE_SECONDS = 10  # the gateways' own cost, before any call
CONFIGS = ("plain", "influx", "dashboard", "both")
EXPORTING = ("influx", "both")
WATCHED = ("dashboard", "both")


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
        for config in EXPORTING:
            query = {"q": f"CREATE DATABASE {database(config)}"}
            httpx.post(f"{url}/query", data=query).raise_for_status()
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def database(config: str) -> str:
    return f"nuvem_{config}"


def points_in(url: str, config: str) -> int:
    """How many invocation points `config`'s gateway wrote: proof that the export ran."""
    answer = httpx.post(
        f"{url}/query",
        data={
            "db": database(config),
            "q": "SELECT count(value) FROM gateway_function_invocation_total",
        },
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


def env_of(config: str, influx_url: str) -> dict[str, str]:
    if config not in EXPORTING:
        return {}
    return {
        "NUVEM_INFLUXDB_URL": influx_url,
        "NUVEM_INFLUXDB_DATABASE": database(config),
        "NUVEM_INFLUXDB_INTERVAL": "1s",
    }


def run(
    configs: list[str], workdir: Path, influx_url: str, args: argparse.Namespace, wrk: str
) -> tuple[Runs, dict[str, str]]:
    viewers = {config: Viewers() for config in configs if config in WATCHED}
    with contextlib.ExitStack() as stack, err.status("starting the gateways") as status:
        targets: dict[str, Target] = {}
        for config in configs:
            platform = stack.enter_context(nuvem(workdir, env_of(config, influx_url), name=config))
            targets[config] = target(workdir, config, platform)
            if config in viewers:
                stack.callback(viewers[config].close)  # before its gateway stops
                viewers[config].open(platform, VIEWERS)
        status.update(f"idle for {IDLE_SECONDS} s")
        idle = idle_cpu(targets, IDLE_SECONDS)
        runs = run_rounds(wrk, targets, args, status)
    notes = {config: f"idle: {ms:.1f} ms CPU a second" for config, ms in idle.items()}
    for config, watching in viewers.items():
        if watching.errors:
            raise BenchError(f"{config}: a dashboard stream failed: {watching.errors[0]}")
        notes[config] += f"; {watching.events} stream events"
    for config in configs:
        if config in EXPORTING:
            written = points_in(influx_url, config)
            if written <= 0:
                raise BenchError(f"{config}: the export wrote no invocation points to influxd")
            notes[config] += f"; {written} points in influxd"
    return runs, notes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
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
    try:
        with tempfile.TemporaryDirectory(prefix="nuvem-bench-") as tmp:
            workdir = Path(tmp)
            with influxd(workdir) as influx_url:
                runs, notes = run(configs, workdir, influx_url, args, wrk)
    except BenchError as exc:
        err.print(f"[red]benchmark failed:[/] {exc}", highlight=False)
        return 1
    title = "echo with observability on vs off"
    out.print(render(runs, "plain", GOAL_RATIO, title, "configuration"))
    for line in slices(runs):
        out.print(line, highlight=False)
    for config, note in notes.items():
        out.print(f"  {config}: {note}", highlight=False)
    worst = runs.worst("plain")
    out.print(
        f"goal: every configuration at least {GOAL_RATIO:.0%} of plain: "
        + (
            "[green]holds[/]"
            if worst >= GOAL_RATIO
            else f"[red]missed[/] (worst ratio {worst:.3f})"
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
