"""Echo through nuvem against a FastAPI app that echoes directly, in the same run.

    .venv/bin/python bench/echo.py [--duration 10] [--concurrency 1,64] [--json results.json]

Both servers start on free loopback ports with their state in a temporary folder: nuvem
(`nuvem up`, gateway plus one worker running examples/functions.py:echo) and the baseline
(bench/direct_app.py under `uvicorn --workers 2`, httptools, uvloop, no access log). wrk,
a load generator in C that costs little CPU, POSTs `{"text":"hi"}` at each concurrency:
first a warm-up run that is not counted, then the measured one. Any non-2xx answer or
socket error fails the benchmark. The table compares throughput and latency percentiles
and says whether nuvem meets its goals: at least half of the direct app's throughput, and
at most 1 ms added to the median latency.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx
from rich import box
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
EXAMPLES = ROOT / "examples"
HOST = "127.0.0.1"
BODY = b'{"text":"hi"}'
FUNCTION = "echo"
JSON_HEADERS = {"content-type": "application/json"}

MIN_THROUGHPUT_RATIO = 0.5  # nuvem serves at least half the direct app's requests per second
MAX_ADDED_P50_MS = 1.0  # and adds at most this much to the median latency
DIRECT_WORKERS = 2
START_TIMEOUT = 120.0  # seconds for a server to answer its first call
STOP_TIMEOUT = 60.0

out = Console()
err = Console(stderr=True)


class BenchError(Exception):
    """The benchmark could not run or its measurements are not to be trusted."""


# -- load generation -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Measurement:
    """What one wrk run reported."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PERCENTILE = r"^\s*{}%\s+([\d.]+)(us|ms|s|m|h)\s*$"
_REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")

# No response() callback: defining one makes wrk hand every answer to Lua, which cost the
# direct app about 15% of its throughput in our measurements. wrk's own tally ("Non-2xx or
# 3xx responses") counts statuses >= 400; neither server redirects, and start-up checks
# that a call answers 200 with the body echoed.
_LUA = """\
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
"""


def _lua_string(text: str) -> str:
    if any(ch in text for ch in "\r\n\0"):
        raise BenchError(f"cannot put {text!r} in a request header")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_script(folder: Path, name: str, api_key: str | None) -> Path:
    """The wrk script that POSTs the JSON body, with the API key when one is given."""
    auth = (
        ""
        if api_key is None
        else f'wrk.headers["Authorization"] = {_lua_string("Bearer " + api_key)}'
    )
    path = folder / f"{name}.lua"
    path.write_text(_LUA.format(body=_lua_string(BODY.decode()), auth=auth))
    return path


def _ms(output: str, percentile: int) -> float:
    found = re.search(_PERCENTILE.format(percentile), output, re.MULTILINE)
    if found is None:
        raise BenchError(f"wrk printed no {percentile}% latency line:\n{output}")
    return float(found[1]) * _UNIT_MS[found[2]]


def parse_wrk(output: str) -> Measurement:
    """Read req/s, the 50% and 99% latencies and every kind of error from wrk's report."""
    rate, requests, non_2xx = (
        _RATE.search(output),
        _REQUESTS.search(output),
        _NON_2XX.search(output),
    )
    if rate is None or requests is None:
        raise BenchError(f"cannot read wrk's report:\n{output}")
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    if (found := _SOCKET_ERRORS.search(output)) is not None:
        errors = dict(zip(errors, map(int, found.groups()), strict=True))
    return Measurement(
        requests_per_s=float(rate[1]),
        p50_ms=_ms(output, 50),
        p99_ms=_ms(output, 99),
        requests=int(requests[1]),
        non_2xx=0 if non_2xx is None else int(non_2xx[1]),
        socket_errors=errors,
    )


def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    concurrency: int,
    seconds: int,
    request_timeout: int | None = None,
) -> Measurement:
    """wrk's report; `request_timeout` (seconds) for calls slower than wrk's 2 s default."""
    threads = min(concurrency, 2)
    argv = [wrk, f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--latency"]
    if request_timeout is not None:
        argv += ["--timeout", f"{request_timeout}s"]
    argv += ["-s", str(script), url]
    limit = seconds + 60 + (request_timeout or 0)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish within {limit}s: {' '.join(argv)}") from exc
    if done.returncode != 0:
        raise BenchError(f"wrk failed with code {done.returncode}:\n{done.stdout}{done.stderr}")
    result = parse_wrk(done.stdout)
    failed = {kind: n for kind, n in result.socket_errors.items() if n}
    if result.non_2xx or failed:
        raise BenchError(
            f"{url} at concurrency {concurrency}: {result.non_2xx} non-2xx answers, "
            f"socket errors {failed or 'none'} in {result.requests} requests; "
            "the numbers are not comparable\n" + done.stdout
        )
    return result


# -- the servers -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A server process started for the benchmark, logging to a file; stop() always ends it."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file: IO[bytes] = log.open("wb")
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches its children
        )

    def log_tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(text)

    def wait_until(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        """Poll `ready` until it holds; fail early, with the log, if the server exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise BenchError(
                    f"{self.name} exited with code {code} before {what}:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if ready():
                    return
            time.sleep(0.1)
        raise BenchError(f"{self.name}: no {what} within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL to the whole process group if it lingers."""
        try:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    err.print(f"{self.name} did not stop within {timeout:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # leftover children, if any
            self.process.wait()
        finally:
            self._log_file.close()


def _answers_echo(client: httpx.Client, url: str, headers: dict[str, str]) -> bool:
    response = client.post(url, content=BODY, headers=headers)
    if response.status_code == 200 and response.content != BODY:
        raise BenchError(f"{url} answered {response.content!r} instead of echoing {BODY!r}")
    return response.status_code == 200


@contextlib.contextmanager
def direct_app(workdir: Path, http: str = "httptools", name: str = "direct") -> Iterator[str]:
    """The baseline on a free port, served with uvicorn's `--http` protocol `http` (a name
    or a class's import path); yields the URL to call."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), "direct_app:app"]
    argv += ["--host", HOST, "--port", str(port), "--workers", str(DIRECT_WORKERS)]
    argv += ["--http", http, "--loop", "uvloop", "--no-access-log", "--log-level"]
    argv += ["warning"]
    server = Server(f"the {name} app", argv, dict(os.environ), workdir / f"{name}.log")
    url = f"http://{HOST}:{port}/echo"
    try:
        with httpx.Client(timeout=5.0) as client:
            server.wait_until(
                "answer", lambda: _answers_echo(client, url, JSON_HEADERS), START_TIMEOUT
            )
        yield url
    finally:
        server.stop()


@dataclasses.dataclass(frozen=True, slots=True)
class Nuvem:
    url: str  # the echo function's
    api_key: str
    base: str = ""  # the gateway's
    admin_password: str = ""


def _stack_file(workdir: Path) -> Path:
    """Only the example echo function, configured as in examples/nuvem.yaml."""
    path = workdir / "nuvem.yaml"
    path.write_text(
        "functions:\n"
        f"  {FUNCTION}:\n"
        "    handler: functions:echo\n"
        f"    root: {json.dumps(str(EXAMPLES))}\n"
        "    max_inflight: 64\n"
    )
    return path


@contextlib.contextmanager
def nuvem(
    workdir: Path, extra_env: dict[str, str] | None = None, name: str = "nuvem"
) -> Iterator[Nuvem]:
    """`nuvem up` with a fresh state folder; `nuvem down` (then signals) when done.
    `extra_env` adds settings (NUVEM_...) to the gateway's environment."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    state = workdir / f"{name}-state"
    password = secrets.token_urlsafe(18)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUVEM_")}
    env |= {"NUVEM_ADMIN_PASSWORD": password, "NUVEM_URL": base, **(extra_env or {})}
    cli = [sys.executable, "-m", "nuvem.cli.main"]
    argv = [*cli, "up", "-f", str(_stack_file(workdir)), "--host", HOST, "--port", str(port)]
    argv += ["--state-dir", str(state), "--log-level", "warning"]
    server = Server(name, argv, env, workdir / f"{name}.log")
    try:
        with httpx.Client(base_url=base, timeout=5.0) as client:
            server.wait_until(
                "health", lambda: client.get("/healthz").status_code == 200, START_TIMEOUT
            )
            created = client.post(
                "/system/keys",
                auth=("admin", password),
                json={"name": "bench", "functions": [FUNCTION]},
            )
            if created.status_code != 201:
                raise BenchError(f"creating an API key: {created.status_code} {created.text}")
            api_key: str = created.json()["key"]
            url = f"{base}/function/{FUNCTION}"
            headers = {**JSON_HEADERS, "authorization": f"Bearer {api_key}"}
            server.wait_until(
                f"answer from {FUNCTION}",
                lambda: _answers_echo(client, url, headers),
                START_TIMEOUT,
            )
        yield Nuvem(url, api_key, base, password)
    finally:
        try:
            if server.process.poll() is None:
                _nuvem_down([*cli, "down", "--state-dir", str(state)], env, server)
        finally:
            server.stop()


def _nuvem_down(argv: list[str], env: dict[str, str], server: Server) -> None:
    """Run `nuvem down` while reaping the gateway: `down` waits until its process is gone,
    and an exited child of ours that we have not reaped would still look alive to it."""
    down = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        server.process.wait(STOP_TIMEOUT)
        _, stderr = down.communicate(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        err.print(f"nuvem did not stop within {STOP_TIMEOUT:.0f}s of `nuvem down`")
    else:
        if down.returncode != 0:
            err.print(f"nuvem down failed ({down.returncode}): {stderr.decode().strip()}")
    finally:
        if down.poll() is None:
            down.kill()
            down.communicate()


# -- the comparison --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Comparison:
    concurrency: int
    direct: Measurement
    nuvem: Measurement

    @property
    def throughput_ratio(self) -> float:
        return self.nuvem.requests_per_s / self.direct.requests_per_s

    @property
    def added_p50_ms(self) -> float:
        return self.nuvem.p50_ms - self.direct.p50_ms

    @property
    def throughput_ok(self) -> bool:
        return self.throughput_ratio >= MIN_THROUGHPUT_RATIO

    @property
    def latency_ok(self) -> bool:
        return self.added_p50_ms <= MAX_ADDED_P50_MS

    def as_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "direct": dataclasses.asdict(self.direct),
            "nuvem": dataclasses.asdict(self.nuvem),
            "throughput_ratio": self.throughput_ratio,
            "added_p50_ms": self.added_p50_ms,
            "throughput_ok": self.throughput_ok,
            "latency_ok": self.latency_ok,
        }


def render(results: list[Comparison], seconds: int) -> Table:
    table = Table(
        title=f"echo: nuvem vs direct FastAPI ({seconds}s per run, POST {BODY.decode()})",
        header_style="bold",
        caption=(
            "nuvem: gateway and one echo replica (max_inflight 64); direct: uvicorn with "
            f"{DIRECT_WORKERS} workers; {os.cpu_count()} CPUs on this host"
        ),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("conc.", justify="right")
    for side in ("direct", "nuvem"):
        table.add_column(f"{side}\nreq/s", justify="right")
        table.add_column(f"{side}\np50 ms", justify="right")
        table.add_column(f"{side}\np99 ms", justify="right")
    table.add_column("nuvem/\ndirect", justify="right")
    table.add_column("added\np50 ms", justify="right")
    for r in results:

        def cells(m: Measurement) -> list[str]:
            return [f"{m.requests_per_s:,.0f}", f"{m.p50_ms:.3f}", f"{m.p99_ms:.3f}"]

        ratio_style = "green" if r.throughput_ok else "red"
        added_style = "green" if r.latency_ok else "red"
        table.add_row(
            str(r.concurrency),
            *cells(r.direct),
            *cells(r.nuvem),
            f"[{ratio_style}]{r.throughput_ratio:.0%}[/]",
            f"[{added_style}]{r.added_p50_ms:+.3f}[/]",
        )
    return table


def report_goals(results: list[Comparison]) -> bool:
    for r in results:
        for ok, text in (
            (
                r.throughput_ok,
                f"throughput {r.throughput_ratio:.0%} of direct "
                f"(goal >= {MIN_THROUGHPUT_RATIO:.0%})",
            ),
            (
                r.latency_ok,
                f"adds {r.added_p50_ms:+.3f} ms at p50 (goal <= {MAX_ADDED_P50_MS:g} ms)",
            ),
        ):
            mark = "[green]holds[/]" if ok else "[red]missed[/]"
            out.print(f"  c={r.concurrency}: {text}: {mark}")
    held = all(r.throughput_ok and r.latency_ok for r in results)
    out.print("[bold green]all goals hold[/]" if held else "[bold red]some goals are missed[/]")
    return held


def measure(
    wrk: str, url: str, script: Path, concurrency: int, seconds: int, warmup: int
) -> Measurement:
    if warmup > 0:
        run_wrk(wrk, url, script, concurrency, warmup)
    return run_wrk(wrk, url, script, concurrency, seconds)


def _concurrency_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 1,64") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers, like 1,64")
    return values


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=_positive, default=10, help="seconds per measured run")
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of uncounted load before each run"
    )
    parser.add_argument(
        "--concurrency",
        type=_concurrency_list,
        default=[1, 64],
        help="comma-separated open connections, e.g. 1,64",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    return parser.parse_args(argv)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the cleanup of both servers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        err.print(
            "[red]wrk is not installed.[/] It is the load generator this benchmark uses; "
            "install it with `make system-deps` (Debian: apt-get install wrk)."
        )
        return 2
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    results: list[Comparison] = []
    try:
        with tempfile.TemporaryDirectory(prefix="nuvem-bench-") as tmp:
            workdir = Path(tmp)
            with contextlib.ExitStack() as stack:
                status = stack.enter_context(err.status("starting the direct app and nuvem"))
                direct_url = stack.enter_context(direct_app(workdir))
                platform = stack.enter_context(nuvem(workdir))
                direct_script = write_script(workdir, "direct", None)
                nuvem_script = write_script(workdir, "nuvem", platform.api_key)
                for c in args.concurrency:
                    status.update(f"concurrency {c}: the direct app")
                    d = measure(wrk, direct_url, direct_script, c, args.duration, args.warmup)
                    status.update(f"concurrency {c}: nuvem")
                    n = measure(wrk, platform.url, nuvem_script, c, args.duration, args.warmup)
                    results.append(Comparison(c, d, n))
                status.update("stopping the servers")
    except BenchError as exc:
        err.print(f"[red]benchmark failed:[/] {exc}", highlight=False)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted; both servers were stopped")
        return 130
    out.print(render(results, args.duration))
    held = report_goals(results)
    if args.json is not None:
        document = {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "direct_workers": DIRECT_WORKERS,
            "cpu_count": os.cpu_count(),
            "goals": {
                "min_throughput_ratio": MIN_THROUGHPUT_RATIO,
                "max_added_p50_ms": MAX_ADDED_P50_MS,
            },
            "goals_hold": held,
            "results": [r.as_json() for r in results],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        err.print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
