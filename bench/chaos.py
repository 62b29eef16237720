"""Faults under constant load: nothing may be lost.

    .venv/bin/python bench/chaos.py [--duration 60] [--rate 100] [--backend embedded|servers]
                                    [--kill-every 3] [--models] [--cluster] [--short]
                                    [--json PATH]

`nuvem up` serves three functions, two replicas each: `idem` (idempotent: true), `plain`
(not idempotent) and `work` (run as async jobs; each run appends its job id to a file, so
the runs of every job are counted). With `--models` a fourth, `model`: a small torch model
of this run's own served by nuvem's model support (bench/chaos_model.py: a TorchScript
linear layer, idempotent, two single-threaded replicas), called on the Open Inference
Protocol with a random input whose answer is checked. An asyncio load generator sends
`--rate` calls per second at fixed times (open loop: a slow answer does not slow the load)
in a mix of sync calls to `idem` and `plain`, async submits to `work` with a callback to a
receiver here and, with `--models`, a tenth of the calls to the model. Meanwhile faults
come on a schedule: a random replica (the model's included) is SIGKILLed every
`--kill-every` seconds (its PID from /system/function/{name}; a kill that gateway restarts
push into the load's last second or past it is skipped); the gateway is SIGKILLed and
started again on the same state folder and port twice; with `--backend servers`
redis-server and PostgreSQL 15 (started here) are restarted once each. With `--cluster`
the gateway runs the Ray runtime on a Ray head and one worker node started here
(bench/chaos_cluster.py, on bench/cluster_rig.py), every function's replicas spread over
both, and at a quarter of the run every process of the worker node is SIGKILLed by PID
(its raylet, agents, actors' workers and the replicas' processes under them), as when its
machine dies; the fault is back when every function has its two replicas ready again on
the head. The load lasts `--duration` seconds, or longer when an outage (a gateway
restart, a server restart, a node's replicas) is not over by then: it goes on through it
and 2 s past its end, so every fault's recovery is measured by calls sent after it.

What the client does, as a careful client would: a call refused before it reached the
gateway (connection refused: the gateway is down) is sent again, for every kind; an
idempotent call (to `idem` or the model) whose connection broke is sent again; an async
submit carries an Idempotency-Key and is sent again until it is accepted. Nothing else is
retried.

Guarantees checked (exit 1 when one fails):
- idempotent calls (`idem`, the model): 0 failed, and every model answer is the right `y`;
- non-idempotent calls fail only with the documented 502 (replica died mid-call), or lose
  their connection while the gateway itself is SIGKILLed;
- every accepted job ends `succeeded`, and ran at least once and at most `attempts` times
  (the job record's count); its callback arrived;
- a killed node's replicas are replaced on the head within 60 s.
Reports calls sent, succeeded, failed by kind, jobs submitted vs completed and the time to
recover after each fault (the first success of a call sent after it, of the function whose
replica died for a replica; and when the faulted part served again).

The model is tiny on purpose: a replica loads torch all the same, but ResNet-18 spends
tens of ms of CPU per image, which on this 2-core machine would drown the faults being
measured. A Ray head and node cost ~4-9 s and 0.65-1.6 GiB to start, so `--cluster` is
`make chaos`'s, not CI's; they take bench/cluster.py's addresses and worker ports, so the
two do not run at once.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import random
import secrets
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich import box
from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import chaos_cluster  # noqa: E402
import chaos_model  # noqa: E402
import cluster_rig  # noqa: E402
import echo  # noqa: E402  (Server, free_port, shared with bench/echo.py)
import restartable  # noqa: E402
from chaos_model import TinyModel  # noqa: E402

from nuvem.errors import ClusterError  # noqa: E402

HOST = "127.0.0.1"
SYNC = ("idem", "plain")
JOB_FUNCTION = "work"
CALL_TIMEOUT = 20.0  # seconds a client waits for one answer
CONNECT_TIMEOUT = 5.0  # ... and for its connection (a refused one fails at once)
POOLS = 8  # connection pools of the load generator, each of at most POOL_SIZE connections
POOL_SIZE = 32
RESEND_FIRST = 0.1  # seconds before a call is sent again, doubling up to RESEND_MAX
RESEND_MAX = 1.0
RETRY_WINDOW = 60.0  # how long a client keeps re-sending a call it may re-send
SETTLE_TIMEOUT = 600.0  # after the load: how long a backlog of accepted jobs may take
STALL_TIMEOUT = 30.0  # ... and how long without one of them finishing
MEASURE_AFTER = 1.0  # seconds of load a replica kill needs after it, or it is skipped
SETTLE = 2.0  # seconds the load goes on after an outage ends, so its recovery is measured
JOB_LEASE = "3"  # seconds: a killed gateway's running jobs are taken over after this

FUNCTIONS = """\
import os
import time

from nuvem import Response


def echo(req):
    return Response(200, req.body, {"content-type": "application/octet-stream"})


def work(req):
    # The run is counted before the work: a replica killed mid-job has still run it once.
    with open(os.environ["CHAOS_RUNS"], "a") as runs:
        runs.write(req.headers["x-call-id"] + "\\n")
    time.sleep(0.02)
    return Response(200, req.body, {"content-type": "application/octet-stream"})
"""


def stack(runs: Path, model: TinyModel | None, cluster: dict[str, Any] | None) -> dict[str, Any]:
    """The stack `nuvem up` serves (JSON, which is YAML too)."""
    two = {"scaling": {"min": 2, "max": 2}}
    functions: dict[str, dict[str, Any]] = {
        "idem": {"handler": "functions:echo", "idempotent": True, **two, "max_inflight": 32},
        "plain": {"handler": "functions:echo", **two, "max_inflight": 32},
        JOB_FUNCTION: {
            "handler": "functions:work",
            "env": {"CHAOS_RUNS": str(runs)},
            **two,
            "max_inflight": 16,
            "jobs": {"concurrency": 32, "retries": 30, "backoff": "0.2s", "max_backoff": "2s"},
        },
    }
    if model is not None:
        functions[chaos_model.NAME] = model.spec()
    found: dict[str, Any] = {"functions": functions}
    if cluster is not None:
        found["cluster"] = cluster
        for spec in functions.values():
            spec.update(chaos_cluster.placement())
    return found


out = Console(width=120)
err = Console(stderr=True)


# -- what happened -------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Call:
    kind: str  # idem, plain, job or model
    sent: float  # monotonic seconds since the start of the load
    done: float = 0.0
    outcome: str = "pending"  # "ok", or the failure: a status code or an exception name
    resent: int = 0  # times the client sent it again
    detail: str = ""  # a failed answer's body (its error), to tell why
    job_id: str | None = None


@dataclasses.dataclass(slots=True)
class Fault:
    kind: str  # replica, gateway, redis, postgres, node
    target: str
    at: float
    back: float | None = None  # when the thing faulted was serving again (gateway, servers,
    # node: every function at full strength on the nodes left)


@dataclasses.dataclass(slots=True)
class Record:
    calls: list[Call] = dataclasses.field(default_factory=list)
    faults: list[Fault] = dataclasses.field(default_factory=list)
    gateway_down: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    orphans_left: int = 0  # workers of a killed gateway still alive 10 s later
    # The generator's own health: a late event loop delays calls and their timeouts, and
    # reads as the gateway's slowness.
    loop_lag_max: float = 0.0  # seconds, the longest a 0.1 s sleep overran
    generator_cpu: float = 0.0  # seconds of CPU this process spent during the load


# -- the platform --------------------------------------------------------------------------


class Platform:
    """`nuvem up` on one port and state folder, which `kill()` and `start()` reuse."""

    def __init__(
        self,
        workdir: Path,
        extra_env: dict[str, str],
        model: TinyModel | None = None,
        cluster: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = echo.free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.password = secrets.token_urlsafe(18)
        self.runs = workdir / "runs.txt"
        self.runs.touch()
        self.model = model
        self.functions = [*SYNC, JOB_FUNCTION] + ([chaos_model.NAME] if model else [])
        # A folder of its own: on a cluster the functions' folder ships to the nodes, which
        # must not take the state folder and Ray's session along.
        code = workdir / "code"
        code.mkdir()
        (code / "functions.py").write_text(FUNCTIONS)
        stack_file = code / "nuvem.yaml"
        stack_file.write_text(json.dumps(stack(self.runs, model, cluster), indent=1))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NUVEM_", "RAY_"))}
        self.env = env | {
            "NUVEM_ADMIN_PASSWORD": self.password,
            "NUVEM_URL": self.url,
            "NUVEM_JOB_LEASE": JOB_LEASE,
            **extra_env,
        }
        self.argv = [sys.executable, "-m", "nuvem.cli.main", "up", "-f", str(stack_file)]
        self.argv += ["--host", HOST, "--port", str(self.port)]
        self.argv += ["--state-dir", str(workdir / "state"), "--log-level", "warning"]
        self.server: echo.Server | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.workdir / f"nuvem-{self.starts}.log"
        self.server = echo.Server(f"nuvem (start {self.starts})", self.argv, self.env, log)
        with httpx.Client(base_url=self.url, auth=("admin", self.password), timeout=5) as c:
            self.server.wait_until("its functions ready", lambda: self._ready(c), 120)

    def _ready(self, client: httpx.Client) -> bool:
        for name in self.functions:
            found = client.get(f"/system/function/{name}")
            available: int = found.json().get("availableReplicas", 0)
            if found.status_code != 200 or available < 2:
                return False
        return True

    def gateway_pid(self) -> int:
        assert self.server is not None
        return self.server.process.pid

    def kill(self) -> list[int]:
        """SIGKILL the gateway alone, as a crash would; the PIDs of its workers then."""
        pid = self.gateway_pid()
        workers = children(pid)
        os.kill(pid, signal.SIGKILL)
        assert self.server is not None
        self.server.stop()  # reaps it and closes its log; its workers have sessions of their own
        return workers

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=60)


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def replica_pids(client: httpx.AsyncClient, name: str) -> list[int]:
    found = await client.get(f"/system/function/{name}", timeout=2)
    if found.status_code != 200:
        return []
    return [r["pid"] for r in found.json()["replicaList"] if r["state"] == "ready" and r["pid"]]


# -- the receiver of callbacks --------------------------------------------------------------


class Receiver:
    """Counts the callbacks of each job (by X-Call-Id)."""

    def __init__(self) -> None:
        self.received: collections.Counter[str] = collections.Counter()
        self.states: dict[str, str] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        call_id = headers.get("x-call-id", "")
        self.received[call_id] += 1
        self.states[call_id] = headers.get("x-job-state", "")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver) -> Any:
    port = echo.free_port()
    config = uvicorn.Config(receiver, host=HOST, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://{HOST}:{port}/hook"
    finally:
        server.should_exit = True
        await task


# -- the load --------------------------------------------------------------------------------

RESEND_ALWAYS = (httpx.ConnectError, httpx.ConnectTimeout)  # never reached the gateway
BROKEN = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadTimeout)


@dataclasses.dataclass
class Horizon:
    """When the load ends: its duration, pushed later by outages that end after it (a
    gateway restart takes 3 s on a quiet machine and 15 s on a loaded one), so that calls
    sent after every fault measure its recovery."""

    end: float
    outages: int = 0  # fault plans under way: the load goes on until they are through

    def reached(self, t: float) -> bool:
        return t >= self.end and not self.outages

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        self.outages += 1
        try:
            yield
        finally:
            self.outages -= 1

    def extend(self, back: float) -> None:
        self.end = max(self.end, back + SETTLE)


class Load:
    def __init__(
        self, platform: Platform, key: str, callback: str, record: Record, t0: float
    ) -> None:
        self.platform = platform
        self.callback = callback
        self.record = record
        self.t0 = t0
        self.headers = {"authorization": f"Bearer {key}"}
        # httpcore's pool does work quadratic in its connections on every request and every
        # answer: one pool of 400, filled by the herd of calls re-sent once a killed gateway
        # is back, took the generator's whole core and starved it for a minute (PoolTimeout,
        # ConnectTimeout) while the gateway was serving again. Small pools, and no more calls
        # in flight than they hold, keep that cost flat.
        limits = httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
        timeout = httpx.Timeout(CALL_TIMEOUT, connect=CONNECT_TIMEOUT)
        self.pools = [
            httpx.AsyncClient(
                base_url=platform.url, timeout=timeout, limits=limits, headers=self.headers
            )
            for _ in range(POOLS)
        ]
        self.in_flight = asyncio.Semaphore(POOLS * POOL_SIZE)
        self.rng = random.Random(29)
        self.model = platform.model

    def now(self) -> float:
        return time.monotonic() - self.t0

    def request(self, kind: str) -> tuple[str, bytes, dict[str, str], Callable[[bytes], bool]]:
        """A call's path, body and headers, and the test of a 200 answer's body."""
        body = secrets.token_bytes(16).hex().encode()
        if kind == "job":
            headers = {"x-callback-url": self.callback, "idempotency-key": str(uuid.uuid4())}
            return f"/async-function/{JOB_FUNCTION}", body, headers, lambda content: False
        if kind == "model":
            model = self.model
            assert model is not None
            body, expected = model.request(self.rng)
            return (
                f"/v2/models/{chaos_model.NAME}/infer",
                body,
                {"content-type": "application/json"},
                lambda content: model.answers(content, expected),
            )
        return f"/function/{kind}", body, {}, lambda content: content == body  # an echo

    async def call(self, kind: str) -> None:
        call = Call(kind, self.now())
        self.record.calls.append(call)
        path, body, headers, right = self.request(kind)
        until = call.sent + RETRY_WINDOW
        http = self.pools[len(self.record.calls) % POOLS]
        while True:
            try:
                async with self.in_flight:
                    answer = await http.post(path, content=body, headers=headers)
            except httpx.HTTPError as exc:
                may_resend = isinstance(exc, RESEND_ALWAYS) or (
                    kind != "plain" and isinstance(exc, BROKEN)
                )
                if may_resend and self.now() < until:
                    await self.pause(call)
                    continue
                call.outcome = type(exc).__name__
                break
            if kind == "job" and answer.status_code >= 500 and self.now() < until:
                await self.pause(call)  # the same Idempotency-Key: never a second job
                continue
            if kind == "job" and answer.status_code == 202:
                call.job_id = answer.json()["id"]
                call.outcome = "ok"
            elif kind != "job" and answer.status_code == 200 and right(answer.content):
                call.outcome = "ok"
            elif answer.status_code == 200:
                call.outcome = "wrong body"
            else:
                call.outcome = str(answer.status_code)
                call.detail = answer.text[:300]
            break
        call.done = self.now()

    async def pause(self, call: Call) -> None:
        """Wait before sending `call` again: doubling, with jitter, so that the calls held up
        by an outage do not come back as one herd nor spin while it lasts."""
        wait = min(RESEND_MAX, RESEND_FIRST * 2**call.resent)
        call.resent += 1
        await asyncio.sleep(wait * self.rng.uniform(0.5, 1.0))

    def kinds(self) -> list[str]:
        """One round of the mix; with the model, a tenth of the calls go to it."""
        if self.model is None:
            return ["idem"] * 4 + ["plain"] * 3 + ["job"] * 3
        return ["idem"] * 7 + ["plain"] * 6 + ["job"] * 5 + ["model"] * 2

    async def run(self, rate: float, horizon: Horizon) -> None:
        """Start `rate` calls a second at fixed times until the horizon; wait for them all."""
        tasks: set[asyncio.Task[None]] = set()
        kinds = self.kinds()
        n = 0
        while not horizon.reached(due := n / rate):
            delay = due - self.now()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.call(kinds[n % len(kinds)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        if tasks:
            await asyncio.gather(*tasks)

    async def close(self) -> None:
        for http in self.pools:
            await http.aclose()


# -- the faults ------------------------------------------------------------------------------


def schedule(
    seconds: float, kill_every: float, backend: str, cluster: bool = False
) -> list[tuple[float, str]]:
    """(time, fault) pairs: replica kills every `kill_every` s, the gateway at a third and
    two thirds, Redis at a fifth and PostgreSQL at a half (servers backend), the worker
    node at a quarter (cluster), before the gateway restarts that start every replica anew."""
    faults = [(seconds / 3, "gateway"), (2 * seconds / 3, "gateway")]
    if backend == "servers":
        faults += [(seconds / 5, "redis"), (seconds / 2, "postgres")]
    if cluster:
        faults.append((seconds / 4, "node"))
    t = kill_every
    while t < seconds - 1:
        if all(abs(t - at) > 1.5 for at, _ in faults):
            faults.append((t, "replica"))
        t += kill_every
    return sorted(faults)


async def inject(
    platform: Platform,
    record: Record,
    t0: float,
    plan: list[tuple[float, str]],
    stores: tuple[restartable.Redis, restartable.Postgres] | None,
    horizon: Horizon,
    cluster: cluster_rig.Cluster | None = None,
) -> None:
    rng = random.Random(17)
    admin = httpx.AsyncClient(base_url=platform.url, auth=("admin", platform.password))
    orphans: list[int] = []
    try:
        # The load goes on until the plan is through: a fault that earlier ones pushed past
        # the load's planned end still has calls to measure its recovery.
        with horizon.outage():
            for at, kind in plan:
                delay = at - (time.monotonic() - t0)
                if kind == "replica" and time.monotonic() - t0 > horizon.end - MEASURE_AFTER:
                    # Pushed this late by gateway restarts: no call would measure its recovery.
                    continue
                if delay > 0:
                    await asyncio.sleep(delay)
                now = time.monotonic() - t0
                if kind == "replica":
                    name = rng.choice(platform.functions)
                    try:
                        pids = await replica_pids(admin, name)
                    except httpx.HTTPError:
                        pids = []
                    if pids:
                        pid = rng.choice(pids)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                        record.faults.append(Fault("replica", f"{name} pid {pid}", now))
                elif kind == "gateway":
                    fault = Fault("gateway", f"pid {platform.gateway_pid()}", now)
                    record.faults.append(fault)
                    orphans += platform.kill()
                    await asyncio.to_thread(platform.start)
                    fault.back = time.monotonic() - t0
                    horizon.extend(fault.back)
                    record.gateway_down.append((fault.at, fault.back))
                elif kind == "node":
                    assert cluster is not None
                    held = await chaos_cluster.replicas_on_node(admin, platform.functions)
                    fault = Fault("node", cluster_rig.NODE_IP, now)
                    record.faults.append(fault)
                    victims = await asyncio.to_thread(chaos_cluster.kill_node, cluster)
                    fault.target += f" ({held} replicas, {len(victims)} processes)"
                    if await chaos_cluster.restored(admin, platform.functions, replicas=2):
                        fault.back = time.monotonic() - t0
                        horizon.extend(fault.back)
                elif stores is not None:
                    server = stores[0] if kind == "redis" else stores[1]
                    fault = Fault(kind, f"port {server.port}", now)
                    record.faults.append(fault)
                    await asyncio.to_thread(server.restart)
                    fault.back = time.monotonic() - t0
                    horizon.extend(fault.back)
            horizon.extend(time.monotonic() - t0)
    finally:
        await admin.aclose()
    # A worker whose gateway died ends when its socket closes; any still alive is a leak.
    deadline = time.monotonic() + 10
    while any(alive(p) for p in orphans) and time.monotonic() < deadline:  # noqa: ASYNC110 (other processes: no event to await)
        await asyncio.sleep(0.1)
    left = [p for p in orphans if alive(p)]
    record.orphans_left = len(left)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- the verdict -----------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class JobCheck:
    submitted: int = 0
    succeeded: int = 0
    not_succeeded: dict[str, int] = dataclasses.field(default_factory=dict)
    never_ran: int = 0
    ran_more_than_attempts: int = 0
    ran_twice_or_more: int = 0
    attempts_over_one: int = 0
    callbacks_missing: int = 0
    callbacks_duplicated: int = 0


async def check_jobs(platform: Platform, record: Record, receiver: Receiver) -> JobCheck:
    """Wait while accepted jobs still finish (their callbacks arrive; a job lost makes no
    progress, a backlog does), for at most SETTLE_TIMEOUT; then compare the job records with
    the runs the handler counted and the callbacks received."""
    ids = [c.job_id for c in record.calls if c.job_id is not None]
    result = JobCheck(submitted=len(ids))
    states: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + SETTLE_TIMEOUT
    done, last_progress = -1, time.monotonic()
    # Counting callbacks costs the gateway nothing, so polling does not slow the backlog.
    while time.monotonic() < deadline and time.monotonic() - last_progress < STALL_TIMEOUT:
        now_done = sum(receiver.received[i] > 0 for i in ids)
        if now_done == len(ids):
            break
        if now_done > done:
            done, last_progress = now_done, time.monotonic()
        await asyncio.sleep(0.5)
    auth = ("admin", platform.password)
    async with httpx.AsyncClient(base_url=platform.url, auth=auth, timeout=10) as admin:
        for job_id in ids:
            answer = await admin.get(f"/system/jobs/{job_id}")
            if answer.status_code == 200:
                states[job_id] = answer.json()
    runs = collections.Counter(platform.runs.read_text().split())
    not_succeeded: collections.Counter[str] = collections.Counter()
    for job_id in ids:
        job = states.get(job_id, {})
        state = job.get("state", "unknown")
        attempts = int(job.get("attempts", 0))
        if state == "succeeded":
            result.succeeded += 1
        else:
            not_succeeded[state] += 1
        if runs[job_id] == 0:
            result.never_ran += 1
        if runs[job_id] > max(attempts, 1):
            result.ran_more_than_attempts += 1
        if runs[job_id] > 1:
            result.ran_twice_or_more += 1
        if attempts > 1:
            result.attempts_over_one += 1
        if receiver.received[job_id] == 0:
            result.callbacks_missing += 1
        elif receiver.received[job_id] > 1:
            result.callbacks_duplicated += 1
    result.not_succeeded = dict(not_succeeded)
    return result


def _during_gateway_kill(call: Call, record: Record) -> bool:
    return any(call.sent <= back and call.done >= at - 0.05 for at, back in record.gateway_down)


def violations(record: Record, jobs: JobCheck) -> list[str]:
    found = []
    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for call in record.calls:
        if call.outcome == "ok":
            continue
        allowed = call.kind == "plain" and (
            call.outcome == "502"
            or (call.outcome in _BROKEN_NAMES and _during_gateway_kill(call, record))
        )
        if not allowed:
            by_kind[call.kind][call.outcome] += 1
    for kind, counts in sorted(by_kind.items()):
        found.append(f"{kind}: {sum(counts.values())} failed outside the guarantees {dict(counts)}")
    if jobs.succeeded != jobs.submitted:
        found.append(f"jobs: {jobs.submitted} accepted, {jobs.succeeded} succeeded "
                     f"(others: {jobs.not_succeeded})")  # fmt: skip
    if jobs.never_ran:
        found.append(f"jobs: {jobs.never_ran} recorded as done never ran")
    if jobs.ran_more_than_attempts:
        found.append(f"jobs: {jobs.ran_more_than_attempts} ran more often than their attempts")
    if jobs.callbacks_missing:
        found.append(f"jobs: {jobs.callbacks_missing} callbacks never arrived")
    for fault in record.faults:
        if fault.kind == "node" and fault.back is None:
            found.append(
                f"node: its replicas were not replaced within {chaos_cluster.RESTORE_TIMEOUT:.0f} s"
            )
    if record.orphans_left:
        found.append(f"{record.orphans_left} workers of a killed gateway still ran 10 s later")
    return found


_BROKEN_NAMES = {cls.__name__ for cls in BROKEN}


def recovery(record: Record) -> list[tuple[Fault, float | None]]:
    """Per fault: seconds from the fault to the first success of a call sent after it (of
    the function whose replica died, for a replica)."""
    rows = []
    for fault in record.faults:
        name = fault.target.split()[0] if fault.kind == "replica" else None
        kind = "job" if name == JOB_FUNCTION else name
        done = [
            c.done
            for c in record.calls
            if c.outcome == "ok" and c.sent >= fault.at and (kind is None or c.kind == kind)
        ]
        rows.append((fault, min(done) - fault.at if done else None))
    return rows


def summary(record: Record, jobs: JobCheck, seconds: float) -> dict[str, Any]:
    kinds: dict[str, dict[str, Any]] = {}
    for kind in (*SYNC, "job", "model"):
        calls = [c for c in record.calls if c.kind == kind]
        if kind == "model" and not calls:
            continue  # a run without --models
        failed = collections.Counter(c.outcome for c in calls if c.outcome != "ok")
        kinds[kind] = {
            "sent": len(calls),
            "succeeded": sum(c.outcome == "ok" for c in calls),
            "failed": dict(failed),
            "resent": sum(c.resent for c in calls),
            # One answer's body per failure kind: what the gateway said.
            "examples": {c.outcome: c.detail for c in calls if c.detail},
        }
    return {
        "duration_s": seconds,
        "calls": kinds,
        "rate_held": len(record.calls) / seconds,
        "jobs": dataclasses.asdict(jobs),
        "faults": [{**dataclasses.asdict(f), "recovered_after_s": r} for f, r in recovery(record)],
        "orphans_left": record.orphans_left,
        "generator": {"cpu_s": record.generator_cpu, "loop_lag_max_s": record.loop_lag_max},
    }


def render(result: dict[str, Any]) -> None:
    table = Table(title="calls under faults", box=box.SIMPLE_HEAD)
    for column in ("function", "sent", "succeeded", "failed by kind", "resent by client"):
        table.add_column(column, justify="right")
    for kind, c in result["calls"].items():
        failed = ", ".join(f"{k}: {n}" for k, n in c["failed"].items()) or "0"
        table.add_row(kind, str(c["sent"]), str(c["succeeded"]), failed, str(c["resent"]))
    out.print(table)
    for kind, c in result["calls"].items():
        for outcome, detail in c["examples"].items():
            out.print(f"  {kind} {outcome}: {detail}", highlight=False, soft_wrap=True)
    jobs = result["jobs"]
    out.print(
        f"jobs: {jobs['submitted']} accepted, {jobs['succeeded']} succeeded, "
        f"{jobs['attempts_over_one']} took more than one attempt, "
        f"{jobs['ran_twice_or_more']} ran twice or more (each within its attempts: "
        f"{jobs['ran_more_than_attempts'] == 0}), callbacks missing {jobs['callbacks_missing']}, "
        f"duplicated {jobs['callbacks_duplicated']}"
    )
    faults = Table(title="faults and recovery", box=box.SIMPLE_HEAD)
    for column in ("at s", "fault", "target", "back after s", "first success after s"):
        faults.add_column(column, justify="right")
    for f in result["faults"]:
        back = "" if f["back"] is None else f"{f['back'] - f['at']:.2f}"
        rec = "none" if f["recovered_after_s"] is None else f"{f['recovered_after_s']:.2f}"
        faults.add_row(f"{f['at']:.1f}", f["kind"], f["target"], back, rec)
    out.print(faults)
    out.print(f"load held: {result['rate_held']:.0f} calls/s over {result['duration_s']:.0f} s")
    generator = result["generator"]
    out.print(
        f"load generator: {generator['cpu_s']:.1f} s of CPU over the load, event loop at most "
        f"{generator['loop_lag_max_s']:.2f} s late"
    )


# -- the run ---------------------------------------------------------------------------------


@contextlib.contextmanager
def backend(name: str) -> Iterator[tuple[dict[str, str], Any]]:
    if name == "embedded":
        yield {}, None
        return
    why = restartable.available()
    if why is not None:
        raise SystemExit(f"the servers backend cannot run: {why}; or pass --backend embedded")
    with restartable.servers() as (redis, postgres):
        yield {"NUVEM_QUEUE_URL": redis.url, "NUVEM_RECORDS_URL": postgres.url}, (redis, postgres)


async def run(
    args: argparse.Namespace,
    platform: Platform,
    stores: Any,
    cluster: cluster_rig.Cluster | None = None,
) -> dict[str, Any]:
    receiver = Receiver()
    async with receiving(receiver) as hook:
        auth = ("admin", platform.password)
        async with httpx.AsyncClient(base_url=platform.url, auth=auth) as admin:
            made = await admin.post(
                "/system/keys", json={"name": "chaos", "functions": platform.functions}
            )
            made.raise_for_status()
            key: str = made.json()["key"]
        record = Record()
        t0 = time.monotonic()
        load = Load(platform, key, hook, record, t0)
        plan = schedule(args.duration, args.kill_every, args.backend, cluster is not None)
        horizon = Horizon(args.duration)
        cpu = time.process_time()
        lag = asyncio.create_task(watch_lag(record))
        try:
            faults = inject(platform, record, t0, plan, stores, horizon, cluster)
            await asyncio.gather(load.run(args.rate, horizon), faults)
        finally:
            lag.cancel()
            record.generator_cpu = time.process_time() - cpu
            await load.close()
        jobs = await check_jobs(platform, record, receiver)
    result = summary(record, jobs, horizon.end)
    result["violations"] = violations(record, jobs)
    result["backend"] = args.backend
    result["rate"] = args.rate
    result["models"] = args.models
    result["cluster"] = args.cluster
    return result


async def watch_lag(record: Record) -> None:
    while True:
        before = time.monotonic()
        await asyncio.sleep(0.1)
        record.loop_lag_max = max(record.loop_lag_max, time.monotonic() - before - 0.1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--short", action="store_true", help="25 s at 100 calls/s (CI)")
    parser.add_argument("--rate", type=float, default=100.0, help="calls per second")
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills")
    parser.add_argument("--backend", choices=("embedded", "servers"), default="embedded")
    parser.add_argument(
        "--models", action="store_true", help="a tenth of the calls to a small torch model"
    )
    parser.add_argument(
        "--cluster", action="store_true", help="the Ray runtime on a head and a node; the node dies"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    args = parser.parse_args(argv)
    if args.short:
        args.duration, args.rate = 25.0, 100.0
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the cleanup of the gateway and the servers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    # In /tmp, short: Ray's Unix sockets live under the nodes' folders (107 characters at most).
    with tempfile.TemporaryDirectory(prefix="nuvem-chaos-", dir="/tmp") as folder:
        workdir = Path(folder)
        if args.cluster:
            cluster_rig.mark_run(workdir)  # Ray's processes and the replicas, for the sweep
        try:
            with contextlib.ExitStack() as stack:
                env, stores = stack.enter_context(backend(args.backend))
                model = chaos_model.make(workdir) if args.models else None
                found = None
                if args.cluster:
                    err.print("starting a Ray head and a worker node")
                    found = stack.enter_context(chaos_cluster.two_nodes(workdir))
                block = chaos_cluster.stack_block(found) if found is not None else None
                platform = Platform(workdir, env, model, block)
                stack.callback(platform.stop)
                where = f"{args.backend} backend" + (", Ray runtime" if found else "")
                err.print(f"starting nuvem ({where})")
                platform.start()
                err.print(f"{args.duration:.0f} s of {args.rate:.0f} calls/s under faults")
                result = asyncio.run(run(args, platform, stores, found))
        except (echo.BenchError, restartable.ServerDown, ClusterError) as exc:
            err.print(f"[red]chaos run failed:[/] {exc}", highlight=False)
            return 2
        finally:
            if args.cluster:
                cluster_rig.sweep(workdir)
    render(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result["violations"]:
        for line in result["violations"]:
            out.print(f"[bold red]guarantee failed:[/] {line}")
        return 1
    out.print("[bold green]every guarantee held[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
