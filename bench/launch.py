"""Launch to first answer: `nuvem up -f STACK` until its first call answers, for a model
stack (ResNet-18) and a Python function stack, against bare apps started the same way.

    .venv/bin/python bench/launch.py [--runs 5] [--compare OTHER/src] [--json results.json]

Each run starts a server process and POSTs its first call every few milliseconds until one
answers 200; the time from the process's start to that answer is the launch. Runs of the
four servers are interleaved (nuvem echo, direct echo, nuvem ResNet-18, direct ResNet-18,
then again), so a busy neighbour slows every side alike, and the table shows medians.

- nuvem: `nuvem up -f STACK` on a copy of a state folder prepared once with an API key
  (so the admin password and the key exist, as on any start after the first). The
  function's log says when its replica was ready and how long its worker took from the
  gateway's order to its hello (the `replica ready ... started in` line; a worker
  pre-started by `nuvem up` has done part of its start before that order).
- compared (with `--compare SRC`): the same launch of the nuvem in another checkout's
  `src` folder (say, main before a change), interleaved with this one's.
- direct echo: bench/direct_app.py under uvicorn, one worker.
- direct ResNet-18: bench/direct_model_app.py under uvicorn, one worker: FastAPI that
  loads the same weights, runs one warm-up forward and classifies the same JPEG.

Each nuvem launch also prints where its seconds went: every process of it (the CLI, the
gateway, the replica's worker) marks its start-up phases in a file named by
NUVEM_STARTUP_MARKS (nuvem/startup_marks.py, `time.monotonic()`, the machine's clock), and a
table shows each phase's median time since the launch and how long it took since the
previous mark of the same process.

Each launch also reports the CPU seconds the server's processes had used by its first
answer, which a busy machine disturbs far less than the wall time. Then the parts of a
launch, each measured on its own in a fresh interpreter (median CPU seconds of `--runs`):
the interpreter, `import nuvem.cli.main` (what every `nuvem` command loads), the gateway's
modules (`nuvem.cli.server`), torch, the model handler's module, and the model's setup
(weights, warm-up forward) in one process.

Goals (issue 11): ResNet-18 stack <= 2 s, function stack <= 1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from echo import BENCH, BODY, EXAMPLES, HOST, BenchError, Server, free_port
from rich import box
from rich.console import Console
from rich.table import Table

from models import cpu_seconds, make_jpeg, make_weights

MODEL = "resnet18"
ONNX = "resnet18-onnx"  # the same model on ONNX Runtime, its export cached by a first start
ECHO = "echo"
GOALS = {ECHO: 1.0, MODEL: 2.0, ONNX: 2.0}  # seconds, launch to first answer
DIRECT_OF = {ECHO: ECHO, MODEL: MODEL, ONNX: MODEL}  # the bare app each is compared with
POLL = 0.005
START_TIMEOUT = 120.0
READY_LINE = re.compile(r"replica ready .*started in ([\d.]+) s")

out = Console()
err = Console(stderr=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Launch:
    """One launch, in seconds from the process's start."""

    answered: float  # the first 200
    cpu: float  # CPU seconds its processes had used by then (steadier than wall time here)
    replica_ready: float | None = None  # nuvem: the replica said hello (from its log)
    replica_start: float | None = None  # nuvem: spawn to hello, as the gateway measured it
    # nuvem: each start-up phase's mark (nuvem/startup_marks.py), seconds from the start,
    # and how long it took since the mark before it in the same process.
    phases: dict[str, tuple[float, float]] | None = None


GATEWAY_START = "launch"  # the process's start, as this benchmark saw it
WORKER_START = "workers spawned"  # roughly when the pre-started workers were spawned
FIRST = "first answer"


def read_marks(path: Path, began: float, answered: float) -> dict[str, tuple[float, float]]:
    """Each phase's first mark: (seconds since `began`, seconds since the previous mark of
    its process). A worker's first mark counts from the gateway's spawn of the workers."""
    if not path.exists():
        return {}
    first: dict[str, tuple[float, int]] = {}
    for raw in path.read_text().splitlines():
        line = json.loads(raw)
        first.setdefault(line["phase"], (line["t"] - began, line["pid"]))
    gateway = first.get("cli imported", (0.0, -1))[1]
    phases: dict[str, tuple[float, float]] = {}
    previous: dict[int, float] = {gateway: 0.0}
    spawned = first.get(WORKER_START, (0.0, gateway))[0]
    for phase, (at, pid) in sorted(first.items(), key=lambda item: item[1][0]):
        before = previous.get(pid, spawned)
        phases[phase] = (at, at - before)
        previous[pid] = at
    phases[FIRST] = (answered, answered - previous[gateway])
    return phases


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    name: str
    path: str  # the call to make
    body: bytes
    headers: dict[str, str]


def first_answer(
    server: Server, base: str, target: Target, began: float, timeout: float = START_TIMEOUT
) -> tuple[float, float]:
    """Seconds from `began` to the first 200, and the CPU seconds the server's processes
    had used by then. (The gateway listens only once it serves, and a call waits for a
    starting replica: no earlier answer tells more.)"""
    deadline = began + timeout
    with httpx.Client(base_url=base, timeout=30.0) as client:
        while time.monotonic() < deadline:
            code = server.process.poll()
            if code is not None:
                raise BenchError(f"{server.name} exited with code {code}:\n{server.log_tail()}")
            try:
                answer = client.post(target.path, content=target.body, headers=target.headers)
            except httpx.TransportError:
                time.sleep(POLL)
                continue
            if answer.status_code == 200:
                return time.monotonic() - began, cpu_seconds(server.process.pid)
            time.sleep(POLL)
    raise BenchError(f"{server.name}: no answer within {timeout:.0f}s:\n{server.log_tail()}")


# -- nuvem -----------------------------------------------------------------------------------


def nuvem_env(password: str, base: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUVEM_")}
    return env | {"NUVEM_ADMIN_PASSWORD": password, "NUVEM_URL": base}


def nuvem_argv(stack: Path | None, state: Path, port: int) -> list[str]:
    argv = [sys.executable, "-m", "nuvem.cli.main", "up"]
    argv += ["-f", str(stack)] if stack is not None else []
    return [*argv, "--host", HOST, "--port", str(port), "--state-dir", str(state)]


def stop_nuvem(server: Server, state: Path, env: dict[str, str]) -> None:
    from echo import _nuvem_down

    try:
        if server.process.poll() is None:
            argv = [sys.executable, "-m", "nuvem.cli.main", "down", "--state-dir", str(state)]
            _nuvem_down(argv, env, server)
    finally:
        server.stop(timeout=60)


def prepare_state(workdir: Path, password: str) -> tuple[Path, str]:
    """A state folder with the admin password and an API key for both functions."""
    state = workdir / "prepared-state"
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = nuvem_env(password, base)
    server = Server("nuvem (preparing)", nuvem_argv(None, state, port), env, workdir / "prep.log")
    try:
        with httpx.Client(base_url=base, timeout=30.0, auth=("admin", password)) as client:
            server.wait_until(
                "health", lambda: client.get("/healthz").status_code == 200, START_TIMEOUT
            )
            created = client.post(
                "/system/keys", json={"name": "bench", "functions": [ECHO, MODEL, ONNX]}
            )
            if created.status_code != 201:
                raise BenchError(f"creating an API key: {created.status_code} {created.text}")
            key: str = created.json()["key"]
    finally:
        stop_nuvem(server, state, env)
    shutil.rmtree(state / "logs", ignore_errors=True)
    return state, key


def stack_file(workdir: Path, weights: Path) -> dict[str, Path]:
    echo = workdir / "echo.yaml"
    echo.write_text(
        f"functions:\n  {ECHO}:\n    handler: functions:echo\n"
        f"    root: {json.dumps(str(EXAMPLES))}\n"
    )
    model = workdir / "model.yaml"
    model.write_text(
        f"functions:\n  {MODEL}:\n"
        f"    model: {{arch: {MODEL}, weights: {json.dumps(str(weights))}}}\n"
        "    batching: {max_batch_size: 8}\n"
        "    timeout: 120s\n"
    )
    onnx = workdir / "onnx.yaml"
    onnx.write_text(
        f"functions:\n  {ONNX}:\n"
        f"    model: {{arch: {MODEL}, weights: {json.dumps(str(weights))}, engine: onnxruntime}}\n"
        "    batching: {max_batch_size: 8}\n"
        "    timeout: 120s\n"
    )
    return {ECHO: echo, MODEL: model, ONNX: onnx}


def replica_times(state: Path, function: str, began_wall: float) -> tuple[float, float] | None:
    """From the function's log: when its replica was ready (seconds after `began_wall`) and
    how long its worker took from spawn to hello."""
    log = state / "logs" / f"{function}.log"
    if not log.exists():
        return None
    for raw in log.read_text().splitlines():
        line = json.loads(raw)
        found = READY_LINE.search(line["text"])
        if found is not None:
            return line["timestamp"] - began_wall, float(found[1])
    return None


def launch_nuvem(
    workdir: Path,
    prepared: Path,
    key: str,
    password: str,
    stack: Path,
    target: Target,
    run: int,
    source: Path | None = None,
) -> Launch:
    """One launch of this checkout's nuvem, or of the one whose `src` folder is `source`."""
    state = workdir / f"state-{target.name}-{run}"
    shutil.copytree(prepared, state)
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = nuvem_env(password, base)
    if source is not None:  # found before this checkout's editable install
        env["PYTHONPATH"] = str(source)
    marks = workdir / f"marks-{target.name}-{run}-{secrets.token_hex(4)}.jsonl"
    env["NUVEM_STARTUP_MARKS"] = str(marks)
    argv = nuvem_argv(stack, state, port)
    began_wall, began = time.time(), time.monotonic()
    server = Server(f"nuvem {target.name}", argv, env, workdir / f"nuvem-{target.name}.log")
    try:
        headers = {**target.headers, "authorization": f"Bearer {key}"}
        answered, cpu = first_answer(
            server, base, dataclasses.replace(target, headers=headers), began
        )
    finally:
        stop_nuvem(server, state, env)
    ready = replica_times(state, target.name, began_wall)
    shutil.rmtree(state, ignore_errors=True)
    phases = read_marks(marks, began, answered)
    return Launch(answered, cpu, *(ready or (None, None)), phases=phases or None)


# -- the bare apps ---------------------------------------------------------------------------


def launch_direct(workdir: Path, app: str, target: Target, env: dict[str, str]) -> Launch:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), app]
    argv += ["--host", HOST, "--port", str(port), "--workers", "1"]
    argv += ["--http", "httptools", "--loop", "uvloop", "--no-access-log"]
    argv += ["--log-level", "warning"]
    began = time.monotonic()
    server = Server(f"direct {target.name}", argv, env, workdir / f"direct-{target.name}.log")
    try:
        answered, cpu = first_answer(server, f"http://{HOST}:{port}", target, began)
    finally:
        server.stop()
    return Launch(answered, cpu)


# -- parts, each on its own ------------------------------------------------------------------

_SETUP = """
import json, os, time
began = time.process_time()
from nuvem.models.handler import ModelHandler
import nuvem.models.torch_engine, nuvem.models.weights  # torch: what its idle worker preloads
imported = time.process_time()
handler = ModelHandler()
handler.setup()
print(json.dumps({"import": imported - began, "setup": time.process_time() - imported}))
"""


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    """The CPU seconds a command used: on a shared machine its wall time says more about
    the neighbours."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed:\n{done.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def parts(weights: Path, workdir: Path, runs: int) -> dict[str, float]:
    """Median CPU seconds of each part of a launch, each in a fresh interpreter; the imports
    are net of the interpreter's own start."""
    python = sys.executable
    cases: dict[str, Callable[[], float]] = {
        "interpreter start (python -c pass)": lambda: timed([python, "-c", "pass"]),
        "import nuvem.cli.main": lambda: timed([python, "-c", "import nuvem.cli.main"]),
        "import nuvem.cli.server (gateway)": lambda: timed(
            [python, "-c", "import nuvem.cli.server"]
        ),
        "import nuvem.runtime.worker": lambda: timed(
            [python, "-c", "import nuvem.runtime.pool_worker"]
        ),
        "import torch": lambda: timed([python, "-c", "import torch"]),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    # The handler's module with the torch engine's, as a pre-started worker imports them.
    handler_import = "import nuvem.models.handler + torch engine"
    model: dict[str, list[float]] = {handler_import: [], "model setup": []}
    config = {
        "function": MODEL,
        "model": {"arch": MODEL, "weights": str(weights)},
        "cache": str(workdir / "models"),
        "threads": 1,
    }
    env = dict(os.environ) | {"NUVEM_MODEL": json.dumps(config), "OMP_NUM_THREADS": "1"}
    for _ in range(runs):
        for name, case in cases.items():
            samples[name].append(case())
        done = subprocess.run(
            [python, "-c", _SETUP], capture_output=True, text=True, env=env, timeout=300
        )
        if done.returncode != 0:
            raise BenchError(f"the model's setup failed:\n{done.stderr}")
        measured = json.loads(done.stdout.splitlines()[-1])
        model[handler_import].append(measured["import"])
        model["model setup"].append(measured["setup"])
    medians = {name: statistics.median(values) for name, values in samples.items()}
    interpreter = medians["interpreter start (python -c pass)"]
    for name in list(medians)[1:]:
        medians[name] -= interpreter  # the import alone
    medians |= {name: statistics.median(values) for name, values in model.items()}
    return medians


# -- report ----------------------------------------------------------------------------------


def median_of(launches: list[Launch], field: str) -> float | None:
    values = [getattr(launch, field) for launch in launches]
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def render(results: dict[str, list[Launch]], measured_parts: dict[str, float], runs: int) -> None:
    table = Table(
        title=f"launch -> first answer, median of {runs} interleaved runs (s)", box=box.SIMPLE
    )
    columns = ("server", "replica ready", "worker start", "first answer", "CPU s by then")
    for column in columns:
        table.add_column(column, justify="right")

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for name, launches in results.items():
        table.add_row(
            name,
            cell(median_of(launches, "replica_ready")),
            cell(median_of(launches, "replica_start")),
            cell(median_of(launches, "answered")),
            cell(median_of(launches, "cpu")),
        )
    out.print(table)
    for name, launches in results.items():
        render_phases(name, launches)
    table = Table(title="parts of a launch, each on its own (median CPU s)", box=box.SIMPLE)
    table.add_column("part")
    table.add_column("seconds", justify="right")
    for name, seconds in measured_parts.items():
        table.add_row(name, f"{seconds:.3f}")
    out.print(table)


def render_phases(name: str, launches: list[Launch]) -> None:
    """Where a launch's seconds went: each phase's median mark and its median duration
    since the previous mark of the same process (gateway or worker)."""
    marked = [launch.phases for launch in launches if launch.phases]
    if not marked:
        return
    names = {phase for phases in marked for phase in phases}
    rows = []
    for phase in names:
        values = [phases[phase] for phases in marked if phase in phases]
        at = statistics.median(v[0] for v in values)
        took = statistics.median(v[1] for v in values)
        rows.append((at, phase, took))
    table = Table(title=f"{name}: start-up phases, median of {len(marked)} (s)", box=box.SIMPLE)
    for column, justify in (("phase", "left"), ("at", "right"), ("took", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for at, phase, took in sorted(rows):
        table.add_row(phase, f"{at:.3f}", f"{took:.3f}")
    out.print(table)


def goals(results: dict[str, list[Launch]]) -> bool:
    held = True
    for function, goal in GOALS.items():
        nuvem = median_of(results[f"nuvem {function}"], "answered")
        direct = median_of(results[f"direct {DIRECT_OF[function]}"], "answered")
        assert nuvem is not None
        assert direct is not None
        ok = nuvem <= goal
        held = held and ok
        mark = "[green]met[/]" if ok else "[red]missed[/]"
        out.print(
            f"{mark}: {function} stack answers {nuvem:.2f} s after launch (goal <= {goal:g} s); "
            f"the bare app {direct:.2f} s (nuvem/bare {nuvem / direct:.2f}); "
            f"machine load {os.getloadavg()[0]:.1f}"
        )
    return held


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nuvem-bench-launch-") as folder:
        yield Path(folder)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="launches of each server")
    parser.add_argument("--only", choices=[ECHO, MODEL, ONNX], help="one stack only")
    parser.add_argument("--skip-parts", action="store_true", help="launches only")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="SRC",
        help="also launch the nuvem in this src folder (another checkout: before and after)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with workspace() as workdir:
        weights = make_weights(MODEL, workdir)
        image = make_jpeg(workdir).read_bytes()
        password = secrets.token_urlsafe(18)
        prepared, key = prepare_state(workdir, password)
        files = stack_file(workdir, weights)
        targets = {
            ECHO: Target(ECHO, f"/function/{ECHO}", BODY, {"content-type": "application/json"}),
            MODEL: Target(MODEL, f"/predictions/{MODEL}", image, {"content-type": "image/jpeg"}),
            ONNX: Target(ONNX, f"/predictions/{ONNX}", image, {"content-type": "image/jpeg"}),
        }
        direct_apps = {ECHO: "direct_app:app", MODEL: "direct_model_app:app"}
        direct_targets = {
            ECHO: dataclasses.replace(targets[ECHO], path="/echo"),
            MODEL: dataclasses.replace(targets[MODEL], path="/predictions"),
        }
        direct_env = dict(os.environ) | {
            "BENCH_WEIGHTS": str(weights),
            "OMP_NUM_THREADS": "1",
        }
        chosen = [args.only] if args.only else [ECHO, MODEL, ONNX]
        if ONNX in chosen:  # exported as the first start of that stack would have
            from nuvem.models.onnx_export import cached_onnx

            cached_onnx(MODEL, weights, None)
        results: dict[str, list[Launch]] = {}
        for name in chosen:
            results[f"nuvem {name}"] = []
            if args.compare is not None:
                results[f"compared {name}"] = []
            if DIRECT_OF[name] == name:
                results[f"direct {name}"] = []
        for run in range(args.runs):
            for name in chosen:
                n = launch_nuvem(workdir, prepared, key, password, files[name], targets[name], run)
                results[f"nuvem {name}"].append(n)
                if args.compare is not None:
                    c = launch_nuvem(
                        workdir,
                        prepared,
                        key,
                        password,
                        files[name],
                        targets[name],
                        run,
                        args.compare,
                    )
                    results[f"compared {name}"].append(c)
                    err.print(f"  run {run + 1}: {args.compare} {name} {c.answered:.2f} s")
                said = f"  run {run + 1}: nuvem {name} {n.answered:.2f} s"
                if DIRECT_OF[name] == name:
                    d = launch_direct(workdir, direct_apps[name], direct_targets[name], direct_env)
                    results[f"direct {name}"].append(d)
                    said += f", direct {d.answered:.2f} s"
                err.print(f"{said} (worker start {n.replica_start})")
        measured_parts = {} if args.skip_parts else parts(weights, workdir, args.runs)
    render(results, measured_parts, args.runs)
    held = goals(results) if not args.only else True
    if args.json is not None:
        document = {
            "runs": args.runs,
            "launches": {k: [dataclasses.asdict(x) for x in v] for k, v in results.items()},
            "parts": measured_parts,
            "goals_s": GOALS,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if held else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        err.print(f"[red]benchmark failed:[/] {exc}", highlight=False)
        sys.exit(1)
