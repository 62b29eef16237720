"""Autoscaling under a step load, and cold starts from zero, against a real `nuvem up`.

    .venv/bin/python bench/autoscale.py [--rate 60] [--step-seconds 20] [--cold-starts 15]

One platform runs three functions from a generated handler module:

- `work` (autoscaled, scaling.mode concurrency) and `fixed` (no autoscaling, one replica):
  the same handler sleeps SERVICE_S per call, with max_inflight 1, so one replica serves at
  most 1/SERVICE_S calls per second. Each gets the same open-loop load: BASE_RATE calls/s,
  then a step to `--rate` (several replicas' worth) for `--step-seconds`. Calls are sent on
  schedule whether or not earlier ones have answered, as real clients do.
- `cold` (min 0, zero_after_s 1s): the bench waits until it is at zero replicas, then times
  one call, `--cold-starts` times; then again on a second platform started with
  NUVEM_WARM_WORKERS=0 (no pre-started workers), for comparison.

It prints, for the step: the time from the step to the first call answered by a replica
added after it, the time until the p99 latency (per second of send time) is back under
LATENCY_TARGET_S for good, calls failed, the p99 after the step; the same with autoscaling
off; and cold-start percentiles with and without the warm pool. Goals: first added replica
serving within 2 s, 0 failed calls, cold start p50 under 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from echo import BenchError, Server, free_port  # bench/ is the script's folder
from rich.console import Console
from rich.table import Table

HOST = "127.0.0.1"
SERVICE_S = 0.05  # one replica: at most 20 calls/s
BASE_RATE = 10.0  # calls/s before the step: half of one replica
BASE_SECONDS = 5.0
LATENCY_TARGET_S = 0.25  # five service times
GOAL_FIRST_REPLICA_S = 2.0
GOAL_COLD_P50_S = 0.3
START_TIMEOUT = 120.0

HANDLERS = f"""
import os
import time


def work(req):
    time.sleep({SERVICE_S})
    return {{"replica": os.environ["NUVEM_REPLICA"]}}


def hello(req):
    return "hi"
"""

STACK = """
functions:
  work:
    handler: handlers:work
    max_inflight: 1
    max_queue: 100000
    timeout: 30s
    scaling: {min: 1, max: 8, mode: concurrency, panic_window_s: 2s, stable_window_s: 30s,
              scale_down_delay_s: 10s}
  fixed:
    handler: handlers:work
    max_inflight: 1
    max_queue: 100000
    timeout: 30s
    scaling: {min: 1, max: 8}
  cold:
    handler: handlers:hello
    scaling: {min: 0, max: 1, mode: concurrency, zero_after_s: 1s, panic_window_s: 1s,
              stable_window_s: 1s, scale_down_delay_s: 0}
"""

out = Console()
err = Console(stderr=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Platform:
    url: str
    password: str

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=("admin", self.password), timeout=30.0)


@contextlib.contextmanager
def platform(
    workdir: Path, name: str, extra_env: dict[str, str], extra_stack: str = ""
) -> Iterator[Platform]:
    port = free_port()
    base = f"http://{HOST}:{port}"
    password = secrets.token_urlsafe(18)
    folder = workdir / name
    folder.mkdir()
    (folder / "handlers.py").write_text(HANDLERS)
    (folder / "nuvem.yaml").write_text(STACK + extra_stack)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUVEM_")}
    env |= {"NUVEM_ADMIN_PASSWORD": password, "NUVEM_URL": base, **extra_env}
    argv = [sys.executable, "-m", "nuvem.cli.main", "up", "-f", str(folder / "nuvem.yaml")]
    argv += ["--host", HOST, "--port", str(port), "--state-dir", str(folder / "state")]
    argv += ["--log-level", "warning"]
    server = Server(f"nuvem ({name})", argv, env, folder / "nuvem.log")
    found = Platform(base, password)
    try:
        with found.admin() as admin:

            def ready() -> bool:
                listed = admin.get("/system/functions")
                if listed.status_code != 200:
                    return False
                by_name = {f["name"]: f for f in listed.json()}
                return all(by_name.get(n, {}).get("availableReplicas") for n in ("work", "fixed"))

            server.wait_until("functions ready", ready, START_TIMEOUT)
        yield found
    finally:
        server.stop(timeout=60)


# -- step load ---------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Call:
    sent: float  # seconds since the load began, when it was due
    answered: float = 0.0
    status: int = 0
    replica: str = ""
    error: str = ""

    @property
    def latency(self) -> float:
        return self.answered - self.sent


async def _one(client: httpx.AsyncClient, url: str, call: Call, origin: float) -> None:
    try:
        response = await client.post(url)
        call.status = response.status_code
        if response.status_code == 200:
            call.replica = response.json()["replica"]
        else:
            call.error = response.text[:200]
    except httpx.HTTPError as exc:
        call.error = f"{type(exc).__name__}: {exc}"
    call.answered = time.monotonic() - origin


async def step_load(platform: Platform, function: str, rate: float, seconds: float) -> list[Call]:
    """BASE_RATE calls/s for BASE_SECONDS, then `rate` calls/s for `seconds`, on schedule."""
    schedule: list[float] = []
    t = 0.0
    while t < BASE_SECONDS:
        schedule.append(t)
        t += 1.0 / BASE_RATE
    t = BASE_SECONDS
    while t < BASE_SECONDS + seconds:
        schedule.append(t)
        t += 1.0 / rate
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=200)
    auth = ("admin", platform.password)
    calls = [Call(s) for s in schedule]
    url = f"/function/{function}"
    async with httpx.AsyncClient(
        base_url=platform.url, auth=auth, timeout=60.0, limits=limits
    ) as client:
        origin = time.monotonic()
        tasks = []
        for call in calls:
            delay = call.sent - (time.monotonic() - origin)
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one(client, url, call, origin)))
        await asyncio.gather(*tasks)
    return calls


def p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


@dataclasses.dataclass(frozen=True, slots=True)
class StepResult:
    first_added_s: float | None  # step -> first call answered by a replica added after it
    recovered_s: float | None  # step -> p99 per second of send time under target for good
    failed: int
    calls: int
    p99_after_step_s: float
    failures: dict[str, int]  # by HTTP status, or the client's error
    max_replicas_seen: int


def analyse(calls: list[Call]) -> StepResult:
    before = {c.replica for c in calls if c.sent < BASE_SECONDS and c.replica}
    added = [c.answered for c in calls if c.replica and c.replica not in before]
    first_added = min(added) - BASE_SECONDS if added else None
    after = [c for c in calls if c.sent >= BASE_SECONDS]
    by_second: dict[int, list[float]] = {}
    for call in after:
        latency = call.latency if call.status == 200 else float("inf")
        by_second.setdefault(int(call.sent - BASE_SECONDS), []).append(latency)
    recovered = None
    for second in sorted(by_second, reverse=True):
        if p99(by_second[second]) >= LATENCY_TARGET_S:
            break
        recovered = float(second)
    failed = sum(1 for c in calls if c.status != 200)
    latencies = [c.latency for c in after if c.status == 200]  # failures are counted apart
    return StepResult(
        first_added_s=first_added,
        recovered_s=recovered,
        failed=failed,
        calls=len(calls),
        p99_after_step_s=p99(latencies),
        failures=dict(
            collections.Counter(
                str(c.status) if c.status else c.error.split(":")[0]
                for c in calls
                if c.status != 200
            )
        ),
        max_replicas_seen=len({c.replica for c in calls if c.replica}),
    )


# -- cold starts -------------------------------------------------------------------------------


def cold_starts(platform: Platform, count: int) -> list[float]:
    """Time single calls to `cold`, each made once it has gone to zero replicas."""
    seconds: list[float] = []
    with platform.admin() as admin:
        for _ in range(count):
            wait_for_zero(admin, "cold")
            began = time.perf_counter()
            response = admin.post("/function/cold")
            elapsed = time.perf_counter() - began
            if response.status_code != 200:
                raise BenchError(f"a cold call failed: {response.status_code} {response.text}")
            seconds.append(elapsed)
    return seconds


MODEL_STACK = """
  model:
    model: {{arch: resnet18, weights: {weights}}}
    timeout: 120s
    scaling: {{min: 0, max: 1, mode: concurrency, zero_after_s: 5s, panic_window_s: 1s,
              stable_window_s: 1s, scale_down_delay_s: 0}}
"""
# zero_after_s 5s, not 1s: long enough for the pool to have pre-started the next worker
# (importing torch takes seconds); real functions idle for minutes before going to zero.

# What a model replica does in a fresh process, step by step (run with the bench's Python).
MODEL_STEPS = """
import sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
from nuvem.models import architectures, weights
model = architectures.build("resnet18")
t2 = time.perf_counter()
weights.load_weights(model, sys.argv[1]).eval()
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


@dataclasses.dataclass(frozen=True, slots=True)
class ModelResult:
    cold_s: list[float]  # call to a model function at zero -> its answer
    import_torch_s: float
    build_s: float
    load_weights_s: float


def model_weights(workdir: Path) -> Path | None:
    """A resnet18 weights file (randomly initialised: nothing is downloaded), or None
    without torch."""
    try:
        from nuvem.models import architectures, weights
    except ImportError:
        return None
    return weights.save_weights(architectures.build("resnet18"), workdir / "resnet18.safetensors")


def jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (120, 60, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def model_cold_starts(platform: Platform, count: int, weights: Path) -> ModelResult:
    seconds: list[float] = []
    image = jpeg()
    with platform.admin() as admin:
        for _ in range(count):
            wait_for_zero(admin, "model")
            began = time.perf_counter()
            response = admin.post("/predictions/model", content=image, timeout=180)
            elapsed = time.perf_counter() - began
            if response.status_code != 200:
                raise BenchError(f"a model call failed: {response.status_code} {response.text}")
            seconds.append(elapsed)
    steps = subprocess.run(
        [sys.executable, "-c", MODEL_STEPS, str(weights)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    import_torch, build, load = (float(x) for x in steps.stdout.split())
    return ModelResult(seconds, import_torch, build, load)


def wait_for_zero(admin: httpx.Client, function: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        status = admin.get(f"/system/function/{function}").json()
        if status["replicas"] == 0 and sum(status["replicaStates"].values()) == 0:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{function} did not go to zero replicas: {status}")
        time.sleep(0.1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- report ------------------------------------------------------------------------------------


def _s(value: float | None) -> str:
    if value is None:
        return "never"
    if value == float("inf"):
        return "failed"
    return f"{value:.2f} s"


def render(
    auto: StepResult, fixed: StepResult, warm: list[float], spawned: list[float], rate: float
) -> Table:
    table = Table(
        title=f"step {BASE_RATE:g} -> {rate:g} calls/s; one replica serves {1 / SERVICE_S:g}/s",
        title_justify="left",
    )
    table.add_column("measure")
    table.add_column("autoscaled", justify="right")
    table.add_column("autoscaling off", justify="right")
    table.add_row("first added replica serving", _s(auto.first_added_s), _s(fixed.first_added_s))
    table.add_row(
        f"p99 back under {LATENCY_TARGET_S * 1000:.0f} ms",
        _s(auto.recovered_s),
        _s(fixed.recovered_s),
    )
    table.add_row(
        "p99 after the step (answered calls)",
        _s(auto.p99_after_step_s),
        _s(fixed.p99_after_step_s),
    )
    table.add_row(
        "calls failed", f"{auto.failed} of {auto.calls}", f"{fixed.failed} of {fixed.calls}"
    )
    table.add_row(
        "replicas that answered", str(auto.max_replicas_seen), str(fixed.max_replicas_seen)
    )
    table.add_section()
    for name, values in (("cold start, warm pool", warm), ("cold start, no warm pool", spawned)):
        table.add_row(
            name,
            f"p50 {percentile(values, 0.5) * 1000:.0f} ms",
            f"p90 {percentile(values, 0.9) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms",
        )
    return table


def goals(auto: StepResult, warm: list[float]) -> bool:
    checks = [
        (
            "first added replica serving within 2 s",
            auto.first_added_s is not None and auto.first_added_s <= GOAL_FIRST_REPLICA_S,
        ),
        ("no call failed while scaling", auto.failed == 0),
        ("cold start p50 under 300 ms", percentile(warm, 0.5) < GOAL_COLD_P50_S),
    ]
    for text, ok in checks:
        out.print(f"{'[green]met[/green]' if ok else '[red]missed[/red]'}: {text}")
    return all(ok for _, ok in checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=60.0, help="calls/s after the step")
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--cold-starts", type=int, default=15)
    parser.add_argument("--model-cold-starts", type=int, default=3, help="0: skip the model")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nuvem-autoscale-") as tmp:
        workdir = Path(tmp)
        weights = model_weights(workdir) if args.model_cold_starts > 0 else None
        extra = MODEL_STACK.format(weights=json.dumps(str(weights))) if weights else ""
        model: ModelResult | None = None
        try:
            with platform(workdir, "pooled", {}, extra) as pooled:
                err.print(f"step load on the autoscaled function ({args.rate:g} calls/s)")
                auto = analyse(asyncio.run(step_load(pooled, "work", args.rate, args.step_seconds)))
                err.print("the same load with autoscaling off")
                fixed = analyse(
                    asyncio.run(step_load(pooled, "fixed", args.rate, args.step_seconds))
                )
                err.print(f"{args.cold_starts} cold starts with the warm pool")
                warm = cold_starts(pooled, args.cold_starts)
                if weights is not None:
                    err.print(f"{args.model_cold_starts} cold starts of a resnet18 model")
                    model = model_cold_starts(pooled, args.model_cold_starts, weights)
                with pooled.admin() as admin:
                    events = admin.get("/system/events", params={"limit": 400}).json()
            with platform(workdir, "spawned", {"NUVEM_WARM_WORKERS": "0"}) as spawned_platform:
                err.print(f"{args.cold_starts} cold starts without it")
                spawned = cold_starts(spawned_platform, args.cold_starts)
        except BenchError as exc:
            err.print(f"[red]benchmark failed:[/red] {exc}")
            return 2
    out.print(render(auto, fixed, warm, spawned, args.rate))
    for name, result in (("autoscaled", auto), ("autoscaling off", fixed)):
        if result.failures:
            out.print(f"failed calls {name}, by status: {result.failures}", highlight=False)
    if model is not None:
        out.print(
            f"model (resnet18) cold start: p50 {percentile(model.cold_s, 0.5):.2f} s; in a "
            f"fresh process: import torch {model.import_torch_s:.2f} s, build "
            f"{model.build_s:.2f} s, load weights {model.load_weights_s:.2f} s",
            highlight=False,
        )
    decisions = [e for e in events if e["kind"] == "autoscaled" and e["function"] == "work"]
    for event in decisions[:12]:
        out.print(f"  {event['message']}", highlight=False, soft_wrap=True)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "autoscaled": dataclasses.asdict(auto),
                    "fixed": dataclasses.asdict(fixed),
                    "cold_warm_s": warm,
                    "cold_spawned_s": spawned,
                    "cold_warm_p50_s": statistics.median(warm),
                    "cold_spawned_p50_s": statistics.median(spawned),
                    "model": dataclasses.asdict(model) if model else None,
                },
                indent=2,
            )
        )
    return 0 if goals(auto, warm) else 1


if __name__ == "__main__":
    sys.exit(main())
