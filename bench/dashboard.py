"""What the dashboard's shared snapshot costs the gateway at 100 functions.

    .venv/bin/python bench/dashboard.py [--functions 100] [--replicas 2] [--ticks 300]

In process, on the fakes: a controller with `--functions` functions of `--replicas`
replicas each, every function with calls on three status codes in the latency histogram
(so the registry holds what a busy gateway's does). It times `Sampler.tick()` (read the
registry, the deployments, compute rates and quantiles, append history, serialize), which
runs on the gateway's event loop once a second and so is the time calls wait behind it;
and, apart, the /proc reads of replica memory a local runtime adds (the fakes read none).
Goal: a tick (memory reads amortized) under 10 ms at 100 functions (1% of the loop), a
snapshot under 100 kB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from nuvem.control.controller import Controller
from nuvem.gateway.ui.snapshot import MEMORY_EVERY, Sampler
from nuvem.metrics.registry import Metrics
from nuvem.runtime.logbook import LogBook
from nuvem.runtime.process_stats import rss_bytes
from nuvem.stores.memory import MemoryRecordStore
from support import FakeClock, PlatformEnvironments, echo_runtime, settle, spec

GOAL_TICK_S = 0.010
GOAL_BYTES = 100_000


async def main(functions: int, replicas: int, ticks: int) -> int:
    metrics = Metrics()
    controller = Controller(
        MemoryRecordStore(), echo_runtime(), PlatformEnvironments(), LogBook(), metrics,
        clock=FakeClock(),
    )  # fmt: skip
    names = [f"fn{i:03d}" for i in range(functions)]
    for name in names:
        controller.deploy(spec(name=name, scaling={"min": replicas, "max": replicas}))
    await controller.tick()
    await settle(controller)
    clock = FakeClock(0.0)
    sampler = Sampler(metrics, lambda: controller.deployments, clock=clock)
    costs = []
    for step in range(ticks):
        for name in names:  # some traffic between two ticks, on three codes
            metrics.observe_call(name, 200, 0.003 + (step % 7) * 0.001)
            metrics.observe_call(name, 429, 0.0002)
            metrics.observe_call(name, 500, 0.02)
        clock.advance(1.0)
        started = time.perf_counter()
        sampler.tick()
        costs.append(time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(functions * replicas):
        rss_bytes(os.getpid())
    proc_reads = time.perf_counter() - started
    costs.sort()
    p50, p99 = statistics.median(costs), costs[int(len(costs) * 0.99) - 1]
    size = len(sampler.latest)
    print(f"{functions} functions x {replicas} replicas, {ticks} ticks")
    print(f"tick: p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, max {costs[-1] * 1000:.2f} ms")
    print(
        f"memory reads (/proc, {functions * replicas} replicas, every {MEMORY_EVERY} ticks): "
        f"{proc_reads * 1000:.2f} ms, {proc_reads * 1000 / MEMORY_EVERY:.2f} ms a tick"
    )
    # Each function's series is preallocated for the whole 15 minutes: 9 columns of doubles.
    history = functions * sampler.capacity * 9 * 8
    print(f"snapshot: {size / 1000:.1f} kB; 15-minute history: {history / 2**20:.1f} MiB")
    ok = p50 + proc_reads / MEMORY_EVERY < GOAL_TICK_S and size < GOAL_BYTES
    print(
        f"goal: tick + memory reads < {GOAL_TICK_S * 1000:.0f} ms, snapshot < "
        f"{GOAL_BYTES // 1000} kB: {'met' if ok else 'MISSED'}"
    )
    await controller.stop(grace=0.1)
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--functions", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--ticks", type=int, default=300)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.functions, args.replicas, args.ticks)))
