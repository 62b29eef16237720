"""Cluster mode on this machine: the Ray runtime against the local runtime, in one run.

    .venv/bin/python bench/cluster.py [--quick] [--json results.json]

A Ray head at 127.0.0.62 (no CPUs of its own, so no replica lands on it) and a worker node
at 127.0.0.63 start as tests/ray_cluster.py starts them (the token, every port chosen, a
worker port range and a short temp folder per node; bench/cluster_rig.py). Two gateways run
side by side on loopback for the whole run: one with the local runtime (replicas are worker
processes on a socketpair) and one with `cluster: {engine: ray, address, token_file}`
(replicas are Ray actors on the worker node, called over nuvem's authenticated TCP link).
Both deploy the same functions with the same settings.

1. echo (examples/functions.py:echo, one replica, max_inflight 64): wrk POSTs a small JSON
   body at c=1 and c=32. Goal: the Ray runtime serves at least 90% of the local throughput
   and adds at most 0.5 ms at p50.
2. ResNet-18 (random weights, as bench/models.py makes them; two replicas of one thread,
   batches of up to 8): wrk POSTs a JPEG to /predictions at c=32; images/s, Ray vs local.
3. A node joins, then is lost (bench/node_events.py): time from `nuvem node join` to the
   first call served by a replica that waited pending for its label; time from SIGKILL of
   every process of that node to its replicas serving on the other node.

The local and Ray passes of each workload alternate (local, Ray, Ray, local, ...), each after
a warm-up that is not counted, once start-up work has settled. The table of passes says
which ran when, how busy the machine was (others: with processes not of this run; steal:
CPU time the hypervisor gave to other machines) and the CPU each side's processes spent
per call (Ray's side: its gateway and every process of the head and the node), which
compares the two even when neighbours take a share of the 2 cores. A missed goal is
flagged as not to be trusted when other work took a noticeable share meanwhile.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

# The sibling benchmarks' plumbing (bench/ is on the path as the script's folder).
from cluster_rig import (
    NODE_IP,
    SERVE_LABEL,
    Gateway,
    cluster,
    gateway,
    join_serving_node,
    kill_if_joined,
    mark_run,
    open_gateway,
    replica_nodes,
    sweep,
)
from echo import BenchError, Measurement, run_wrk, write_script
from node_events import Lost, join_then_lose, render_node
from rich import box
from rich.console import Console
from rich.status import Status
from rich.table import Table

from models import cpu_seconds, jpeg_script, make_jpeg, make_weights

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MIN_THROUGHPUT_RATIO = 0.9  # the Ray runtime serves at least 90% of the local throughput
MAX_ADDED_P50_MS = 0.5  # and adds at most this much to echo's median latency
DISTURBED = 0.15  # cores of other work during a workload's passes that make it unreliable
SETTLED = 0.2  # cores that nuvem's and Ray's idle processes use together, at most
ECHO = "echo"
RESNET = "resnet18"

out = Console()
if not out.is_terminal:
    out.width = 132  # a log or a pipe: rich's 80 columns would fold the tables
err = Console(stderr=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """How long each part runs: the full run or --quick."""

    rounds: int  # passes per side and workload; the order alternates (ABBA)
    echo_s: int
    echo_warmup_s: int
    resnet_s: int
    resnet_warmup_s: int


# Many short passes: a burst of the neighbours' load then spoils one pass, not one side.
FULL = Plan(rounds=4, echo_s=7, echo_warmup_s=1, resnet_s=10, resnet_warmup_s=3)  # ~5 min
QUICK = Plan(rounds=2, echo_s=4, echo_warmup_s=1, resnet_s=6, resnet_warmup_s=2)  # ~2 min


# -- the functions, the same on both gateways --------------------------------------------------


def echo_spec() -> dict[str, Any]:
    # resources and placement matter to the Ray runtime only: the local engine has one node,
    # which has every label.
    return {
        "name": ECHO,
        "handler": "functions:echo",
        "root": str(EXAMPLES),
        "max_inflight": 64,
        "resources": {"cpu": 0.5},
        "placement": {"labels": SERVE_LABEL},
    }


def resnet_spec(weights: Path, root: Path) -> dict[str, Any]:
    """bench/models.py's served layout on two cores: one single-threaded replica per core."""
    return {
        "name": RESNET,
        "root": str(root),  # an empty folder: the code bundle of a model is its weights' path
        "model": {"arch": RESNET, "weights": str(weights), "engine": "torch", "threads": 1},
        "batching": {"max_batch_size": 8},
        "scaling": {"min": 2, "max": 2},
        "max_inflight": 64,
        "timeout": "120s",
        "resources": {"cpu": 1},
        "placement": {"labels": SERVE_LABEL},
    }


# -- passes ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Machine:
    """CPU of the whole machine over a pass, in cores (from /proc/stat)."""

    busy: float
    steal: float
    others: float  # busy with processes that are not this run's: the neighbours


def _cpu_ticks() -> tuple[int, int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq, steal, idle + iowait


@contextlib.contextmanager
def machine_load(ours: Callable[[], float]) -> Iterator[list[Machine]]:
    """The machine's load while the block runs; `ours`: CPU seconds so far of this run's
    processes."""
    found: list[Machine] = []
    tick = os.sysconf("SC_CLK_TCK")
    busy, steal, _ = _cpu_ticks()
    own = ours()
    began = time.monotonic()
    yield found
    wall = time.monotonic() - began
    own = ours() - own
    busy2, steal2, _ = _cpu_ticks()
    cores = (busy2 - busy) / tick / wall
    found.append(Machine(cores, (steal2 - steal) / tick / wall, max(0.0, cores - own / wall)))


def own_cpu() -> float:
    """CPU seconds of this process and of its children that ended (wrk)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _cpu(pids: list[int]) -> float:
    """CPU seconds so far of these processes and their descendants."""
    return sum(cpu_seconds(pid) for pid in pids)


@dataclasses.dataclass(frozen=True, slots=True)
class Pass:
    number: int
    workload: str
    side: str
    began_s: float  # since the run began, the warm-up included
    ended_s: float
    load: Measurement
    machine: Machine
    cpu_ms: float  # CPU per call of every process of this side (gateway, replicas, Ray's)
    replica_cpu_ms: float  # of that, the replicas' worker processes

    @property
    def calls_per_cpu_s(self) -> float:
        return 1000 / self.cpu_ms if self.cpu_ms else 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Workload:
    name: str
    function: str
    url_path: str
    script: Callable[[Gateway], Path]
    concurrency: int
    seconds: int
    warmup_s: int
    request_timeout: int | None = None


class Passes:
    """Runs the measured passes in alternating order and remembers when each ran."""

    def __init__(
        self,
        wrk: str,
        began: float,
        gateways: dict[str, Gateway],
        families: dict[str, list[int]],
        rounds: int,
    ) -> None:
        self.wrk = wrk
        self.began = began
        self.gateways = gateways
        self.families = families  # per side, the processes whose trees serve its calls
        self.rounds = rounds
        self.done: list[Pass] = []
        self._first = "local"  # who goes first in the next workload; alternates

    def measure(self, workload: Workload, status: Status) -> list[Pass]:
        first, second = self._first, "ray" if self._first == "local" else "local"
        self._first = second
        order: list[str] = []
        for n in range(self.rounds):
            order += [first, second] if n % 2 == 0 else [second, first]
        found = []
        for side in order:
            gw = self.gateways[side]
            url = gw.base + workload.url_path
            script = workload.script(gw)
            status.update(f"{workload.name}: {side} pass ({len(self.done) + 1})")
            began = time.monotonic() - self.began
            if workload.warmup_s:
                self._wrk(url, script, workload, workload.warmup_s)
            replicas = [r["pid"] for r in gw.status(workload.function)["replicaList"]]
            cpu, replica_cpu = self._cpu(side), _cpu(replicas)
            with machine_load(self._ours) as machine:
                load = self._wrk(url, script, workload, workload.seconds)
            cpu, replica_cpu = self._cpu(side) - cpu, _cpu(replicas) - replica_cpu
            done = Pass(
                len(self.done) + 1,
                workload.name,
                side,
                began,
                time.monotonic() - self.began,
                load,
                machine[0],
                cpu * 1000 / load.requests,
                replica_cpu * 1000 / load.requests,
            )
            err.print(
                f"  #{done.number} {workload.name} {side}: {load.requests_per_s:,.1f}/s, "
                f"p50 {load.p50_ms:.2f} ms (t={done.began_s:.0f}-{done.ended_s:.0f}s)"
            )
            self.done.append(done)
            found.append(done)
        return found

    def _cpu(self, side: str) -> float:
        return _cpu(self.families[side])

    def _ours(self) -> float:
        return own_cpu() + sum(_cpu(pids) for pids in self.families.values())

    def _wrk(self, url: str, script: Path, workload: Workload, seconds: int) -> Measurement:
        return run_wrk(
            self.wrk, url, script, workload.concurrency, seconds, workload.request_timeout
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Comparison:
    workload: str
    local: list[Pass]
    ray: list[Pass]
    goals: bool  # whether the echo goals apply

    def _mean(self, side: str, value: Callable[[Pass], float]) -> float:
        passes: list[Pass] = getattr(self, side)
        return statistics.fmean(value(p) for p in passes)

    def rate(self, side: str) -> float:
        return self._mean(side, lambda p: p.load.requests_per_s)

    def p50(self, side: str) -> float:
        return self._mean(side, lambda p: p.load.p50_ms)

    def cpu_ms(self, side: str) -> float:
        return self._mean(side, lambda p: p.cpu_ms)

    def replica_cpu_ms(self, side: str) -> float:
        return self._mean(side, lambda p: p.replica_cpu_ms)

    @property
    def ratio(self) -> float:
        return self.rate("ray") / self.rate("local")

    @property
    def disturbed(self) -> float:
        """Cores the neighbours took, on average over the passes, steal included."""
        passes = self.local + self.ray
        return statistics.fmean(p.machine.others + p.machine.steal for p in passes)

    @property
    def cpu_ratio(self) -> float:
        """Calls per CPU-second the side's processes got, Ray over local: the ratio with
        the neighbours' share of the machine taken out."""
        return self.cpu_ms("local") / self.cpu_ms("ray")

    @property
    def added_p50_ms(self) -> float:
        return self.p50("ray") - self.p50("local")

    @property
    def throughput_ok(self) -> bool:
        return self.ratio >= MIN_THROUGHPUT_RATIO

    @property
    def latency_ok(self) -> bool:
        return self.added_p50_ms <= MAX_ADDED_P50_MS

    def as_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            **{
                side: {
                    "rate": self.rate(side),
                    "p50_ms": self.p50(side),
                    "cpu_ms_per_call": self.cpu_ms(side),
                    "replica_cpu_ms_per_call": self.replica_cpu_ms(side),
                }
                for side in ("local", "ray")
            },
            "ratio": self.ratio,
            "disturbed_cores": self.disturbed,
            "cpu_ratio": self.cpu_ratio,
            "added_p50_ms": self.added_p50_ms,
            "goals": self.goals,
        }


def compare(passes: list[Pass], goals: bool) -> Comparison:
    return Comparison(
        passes[0].workload,
        [p for p in passes if p.side == "local"],
        [p for p in passes if p.side == "ray"],
        goals,
    )


# -- report ----------------------------------------------------------------------------------


def render_passes(passes: list[Pass]) -> Table:
    table = Table(title="passes, in the order they ran", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("#", "workload", "runtime", "ran (s)", "rate/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column in ("workload", "runtime") else "right")
    table.add_column("CPU ms/call\n(replicas)", justify="right")
    table.add_column("machine\nbusy", justify="right")
    table.add_column("others", justify="right")
    table.add_column("steal", justify="right")
    for p in passes:
        table.add_row(
            str(p.number),
            p.workload,
            p.side,
            f"{p.began_s:.0f}-{p.ended_s:.0f}",
            f"{p.load.requests_per_s:,.1f}",
            f"{p.load.p50_ms:.2f}",
            f"{p.load.p99_ms:.2f}",
            f"{p.cpu_ms:.3g} ({p.replica_cpu_ms:.3g})",
            f"{p.machine.busy:.2f}",
            f"{p.machine.others:.2f}",
            f"{p.machine.steal:.2f}",
        )
    return table


def render_comparisons(results: list[Comparison], idle: dict[str, float]) -> Table:
    table = Table(
        title="Ray runtime (replicas on a worker node) vs local runtime, same machine",
        caption=(
            "means over the passes of each side; CPU: of every process of the side, per "
            "call (the replicas' part in brackets); idle, the Ray side's processes use "
            f"{idle['ray']:.2f} cores (the local side's {idle['local']:.2f}), which "
            f"per CPU-s counts against Ray; {os.cpu_count()} CPUs on this host"
        ),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("workload")
    for side in ("local", "ray"):
        table.add_column(f"{side}\nrate/s", justify="right")
        table.add_column(f"{side}\np50 ms", justify="right")
        table.add_column(f"{side} CPU\nms/call", justify="right")
    table.add_column("ray/\nlocal", justify="right")
    table.add_column("added\np50 ms", justify="right")
    table.add_column("ray/local\nper CPU-s", justify="right")
    for r in results:
        ratio = f"{r.ratio:.0%}"
        added = f"{r.added_p50_ms:+.2f}"
        if r.goals:
            ratio = f"[{'green' if r.throughput_ok else 'red'}]{ratio}[/]"
            added = f"[{'green' if r.latency_ok else 'red'}]{added}[/]"
        cells = []
        for side in ("local", "ray"):
            cells += [
                f"{r.rate(side):,.1f}",
                f"{r.p50(side):.2f}",
                f"{r.cpu_ms(side):.3g} ({r.replica_cpu_ms(side):.3g})",
            ]
        table.add_row(r.workload, *cells, ratio, added, f"{r.cpu_ratio:.0%}")
    return table


def report_goals(results: list[Comparison]) -> bool:
    held = True
    for r in (r for r in results if r.goals):
        for ok, text in (
            (
                r.throughput_ok,
                f"Ray serves {r.ratio:.0%} of local (goal >= {MIN_THROUGHPUT_RATIO:.0%})",
            ),
            (r.latency_ok, f"adds {r.added_p50_ms:+.2f} ms at p50 (goal <= {MAX_ADDED_P50_MS} ms)"),
        ):
            held = held and ok
            out.print(f"  {r.workload}: {text}: {'[green]holds[/]' if ok else '[red]missed[/]'}")
        if not (r.throughput_ok and r.latency_ok) and r.disturbed > DISTURBED:
            out.print(
                f"  [yellow]{r.workload}: other work took {r.disturbed:.2f} cores on average "
                "during these passes (columns others and steal): the verdict is not to be "
                "trusted; run again on a quiet machine[/]"
            )
    return held


def settle(families: dict[str, list[int]], within: float = 30.0) -> tuple[float, dict[str, float]]:
    """Wait until both sides' processes are idle (a replica's start leaves work behind: the
    local runtime's next warm worker imports torch, for one); the seconds waited, and what
    each side uses idle, in cores."""
    began = time.monotonic()
    while True:
        before = {side: _cpu(pids) for side, pids in families.items()}
        time.sleep(1.0)
        idle = {side: _cpu(pids) - before[side] for side, pids in families.items()}
        if sum(idle.values()) < SETTLED or time.monotonic() - began > within:
            return time.monotonic() - began, idle


# -- the run ---------------------------------------------------------------------------------


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through every cleanup


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="shorter passes, two per side (~2 minutes)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    return parser.parse_args(argv)


def run(plan: Plan, wrk: str, root: Path, status: Status) -> dict[str, Any]:
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        # The local gateway starts while the cluster does, and the weights are made meanwhile.
        local = stack.enter_context(gateway(root, "local", "cluster: {engine: local}\n"))
        status.update("starting the Ray head and a worker node; making ResNet-18 weights")
        found = stack.enter_context(cluster(root))
        pool = concurrent.futures.ThreadPoolExecutor(1)
        stack.callback(pool.shutdown)
        joining = pool.submit(join_serving_node, found)
        # Whatever happens next, a node that joined is killed before the head stops.
        stack.callback(kill_if_joined, joining)
        weights = make_weights(RESNET, root)
        image = make_jpeg(root)
        found.node = joining.result()
        ray_stack = f"cluster: {{engine: ray, address: {found.address}, "
        ray_stack += f"token_file: {json.dumps(str(found.token.path))}}}\n"
        ray = stack.enter_context(gateway(root, "ray", ray_stack))
        gateways = {"local": local, "ray": ray}
        model_root = root / "model-root"
        model_root.mkdir()
        status.update("deploying echo and ResNet-18 on both gateways")
        for gw in gateways.values():
            open_gateway(gw)
            gw.deploy(echo_spec())
            gw.deploy(resnet_spec(weights, model_root))
        for gw in gateways.values():
            gw.wait_ready(ECHO, 1)
            gw.wait_ready(RESNET, 2)
        for name, replicas in ((ECHO, 1), (RESNET, 2)):
            where = replica_nodes(ray.status(name))
            if where != [NODE_IP] * replicas:
                raise BenchError(f"the Ray gateway's {name} runs on {where}, not on {NODE_IP}")
        # Ray's side is the gateway and every process of the head and of the node.
        families = {
            "local": [local.pid],
            "ray": [ray.pid, found.head.session.pid, found.node.session.pid],
        }
        status.update("waiting for start-up work to end")
        waited, idle = settle(families)
        err.print(
            f"ready after {time.monotonic() - began:.0f}s (settled for {waited:.0f}s); idle, "
            f"the local side uses {idle['local']:.3f} cores, the Ray side {idle['ray']:.3f}"
        )
        passes = Passes(wrk, began, gateways, families, plan.rounds)
        echo_scripts = {
            side: write_script(root, f"echo-{side}", gw.api_key) for side, gw in gateways.items()
        }
        jpeg_scripts = {}
        for side, gw in gateways.items():
            folder = root / f"jpeg-{side}"
            folder.mkdir()
            jpeg_scripts[side] = jpeg_script(folder, image, gw.api_key)
        results = []
        for c in (1, 32):
            workload = Workload(
                f"echo c={c}",
                ECHO,
                f"/function/{ECHO}",
                lambda gw: echo_scripts[gw.side],
                c,
                plan.echo_s,
                plan.echo_warmup_s,
            )
            results.append(compare(passes.measure(workload, status), goals=True))
        resnet = Workload(
            "resnet18 c=32",
            RESNET,
            f"/predictions/{RESNET}",
            lambda gw: jpeg_scripts[gw.side],
            32,
            plan.resnet_s,
            plan.resnet_warmup_s,
            request_timeout=60,
        )
        results.append(compare(passes.measure(resnet, status), goals=False))

        status.update("a node joins with the label a pending function waits for, then dies")
        joined, lost = join_then_lose(found, ray, root)
        status.update("stopping everything")
    return {
        "passes": passes.done,
        "results": results,
        "joined": joined,
        "lost": lost,
        "idle_cores": idle,
        "wall_s": time.monotonic() - began,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    wrk = shutil.which("wrk")
    if wrk is None:
        err.print("[red]wrk is not installed.[/] `make system-deps` (Debian: apt-get install wrk)")
        return 2
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # Short: Ray's Unix sockets live under the nodes' temp folders (107 characters at most).
    root = Path(tempfile.mkdtemp(prefix="nvb-", dir="/tmp"))
    mark_run(root)
    try:
        with err.status("starting") as status:
            found = run(plan, wrk, root, status)
    except BenchError as exc:
        err.print(f"[red]benchmark failed:[/] {exc}", highlight=False)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted; everything started was stopped")
        return 130
    finally:
        sweep(root)
        shutil.rmtree(root, ignore_errors=True)
    out.print(render_passes(found["passes"]))
    out.print(render_comparisons(found["results"], found["idle_cores"]))
    out.print(render_node(found["joined"], found["lost"]))
    held = report_goals(found["results"])
    out.print(f"whole run: {found['wall_s']:.0f}s ({'quick' if args.quick else 'full'})")
    if args.json is not None:
        lost = found["lost"]
        document = {
            "plan": dataclasses.asdict(plan),
            "idle_cores": found["idle_cores"],
            "passes": [dataclasses.asdict(p) for p in found["passes"]],
            "results": [r.as_json() for r in found["results"]],
            "joined": dataclasses.asdict(found["joined"]) if found["joined"] else None,
            "lost": dataclasses.asdict(lost) if isinstance(lost, Lost) else lost,
            "goals_hold": held,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
