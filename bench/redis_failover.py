"""How long async jobs pause when a Redis Cluster master dies, and that none is lost.

    .venv/bin/python bench/redis_failover.py [--rate 20] [--duration 20] [--kill-at 6]
        [--node-timeout-ms 1000]

Starts a Redis Cluster of three masters and three replicas (tests/redis_cluster.py, with its
`cluster-node-timeout` of 1 s, or `--node-timeout-ms`), PostgreSQL, and `nuvem up` on them
serving two functions: `hit`, whose keys live on the master that dies, and `spared`, whose
keys live on another master. Jobs are submitted to both at `--rate` per second each, at
fixed times (open loop: a slow accept does not slow the load). At `--kill-at` seconds the
master serving `hit` is SIGKILLed (by PID); the load goes on to `--duration`, then every job
is waited for.

Each run of a job appends its function and start time to a file. Reported per function:
the longest gap between two runs before the kill (the baseline, same run) and after it (the
pause), their ratio, and the slowest accept before and after. Also: the time from the kill
until the replica serves the slot, jobs submitted and succeeded, and jobs that ran more
times than their record counts attempts. Exit 1 if a submit was refused, a job did not
succeed, or a job ran uncounted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the cluster and PostgreSQL starters the tests use

from nuvem.stores.redis_keys import FunctionKeys  # noqa: E402
from redis_cluster import NODE_TIMEOUT_MS, LocalRedisCluster  # noqa: E402
from support import ADMIN_PASSWORD, Nuvem, app_folder  # noqa: E402

HANDLER = """
import time
from pathlib import Path

RUNS = Path(__file__).with_name("runs.log")


def work(req):
    with RUNS.open("a") as runs:  # one short line per write: appends do not interleave
        runs.write(f"{req.body.decode()} {time.time()}\\n")
    return b"done"
"""
SETTLE_SECONDS = 120.0
MAX_LISTED = 1000  # the most jobs /system/jobs lists at once


def pick_functions(cluster: LocalRedisCluster) -> dict[str, str]:
    """Two function names on two different masters: role -> name."""
    first = "hit"
    owner = cluster.owner_of(FunctionKeys.of(first).stream).port
    for i in range(1000):
        name = f"spared-{i}"
        if cluster.owner_of(FunctionKeys.of(name).stream).port != owner:
            return {"hit": first, "spared": name}
    raise AssertionError("every name hashed to one master")


@contextlib.contextmanager
def stores(node_timeout_ms: int) -> Iterator[tuple[LocalRedisCluster, str]]:
    import servers

    with (
        servers.redis_cluster_server(node_timeout_ms) as cluster,
        servers.postgres_server() as pg_server,
    ):
        yield cluster, servers.fresh_database(pg_server)


def stack(names: dict[str, str]) -> str:
    return "functions:\n" + "".join(
        f"  {name}:\n    handler: functions:work\n    jobs: {{concurrency: 8}}\n"
        for name in names.values()
    )


class Load:
    def __init__(self, client: httpx.AsyncClient, names: dict[str, str]) -> None:
        self.client = client
        self.names = names
        self.start = time.monotonic()
        self.accepts: list[tuple[str, float, float]] = []  # role, sent at, seconds to the 202
        self.bodies: dict[str, str] = {}  # job id -> its body: "role n"
        self.refused: list[str] = []

    async def submit(self, role: str, body: str) -> None:
        sent = time.monotonic()
        answer = await self.client.post(f"/async-function/{self.names[role]}", content=body)
        if answer.status_code != 202:
            self.refused.append(f"{role} {body}: {answer.status_code} {answer.text[:200]}")
            return
        self.accepts.append((role, sent - self.start, time.monotonic() - sent))
        self.bodies[answer.headers["x-call-id"]] = body

    async def run(self, rate: float, seconds: float) -> None:
        tasks: list[asyncio.Task[None]] = []
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, self.start + n / rate - time.monotonic()))
            for role in self.names:
                tasks.append(asyncio.create_task(self.submit(role, f"{role} {n}")))
        await asyncio.gather(*tasks)


def longest_gap(times: list[float]) -> float:
    ordered = sorted(times)
    return max((b - a for a, b in itertools.pairwise(ordered)), default=0.0)


async def measure(args: argparse.Namespace) -> int:
    with (
        stores(args.node_timeout_ms) as (cluster, records),
        tempfile.TemporaryDirectory(prefix="nuvem-rfo-") as tmp,
    ):
        names = pick_functions(cluster)
        with app_folder(Path(tmp), HANDLER, stack(names)) as root:
            env = {"NUVEM_QUEUE_URL": cluster.url, "NUVEM_RECORDS_URL": records}
            gateway = Nuvem(root, env)
            gateway.start("-f", "nuvem.yaml", "--log-level", "warning")
            try:
                for name in names.values():
                    await gateway.ready(name, 1)
                return await load_and_kill(args, cluster, gateway, names, root)
            finally:
                gateway.stop()


async def load_and_kill(
    args: argparse.Namespace,
    cluster: LocalRedisCluster,
    gateway: Nuvem,
    names: dict[str, str],
    root: Path,
) -> int:
    master = cluster.owner_of(FunctionKeys.of(names["hit"]).stream)
    replica = cluster.replica_of(master)
    auth = ("admin", ADMIN_PASSWORD)
    async with httpx.AsyncClient(base_url=gateway.url, auth=auth, timeout=120) as client:
        load = Load(client, names)
        running = asyncio.create_task(load.run(args.rate, args.duration))
        await asyncio.sleep(max(0.0, load.start + args.kill_at - time.monotonic()))
        killed_at = time.monotonic() - load.start
        kill_wall = time.time()
        cluster.kill(master)
        await asyncio.to_thread(cluster.wait_promoted, master, replica)
        promoted = time.time() - kill_wall
        await running
        jobs = await settle(client, names, set(load.bodies))
    runs: dict[str, list[float]] = collections.defaultdict(list)
    counted: collections.Counter[str] = collections.Counter()
    for line in (root / "runs.log").read_text().splitlines():
        role, n, at = line.split(" ")
        runs[role].append(float(at))
        counted[f"{role} {n}"] += 1
    print(f"cluster-node-timeout {cluster.node_timeout_ms} ms; master killed at {killed_at:.1f} s")
    print(f"replica serving the slot {promoted:.2f} s after the kill (CLUSTER NODES)")
    print(f"{'function':<8} {'gap before':>10} {'pause after':>11} {'ratio':>6} "
          f"{'accept before':>13} {'accept after':>12}")  # fmt: skip
    for role in names:
        before = [t for t in runs[role] if t < kill_wall]
        after = [t for t in runs[role] if t >= kill_wall - longest_gap(before)]
        base, pause = longest_gap(before), longest_gap(after)
        accept_before = max(s for r, at, s in load.accepts if r == role and at < killed_at)
        accept_after = max(s for r, at, s in load.accepts if r == role and at >= killed_at)
        print(
            f"{role:<8} {base:>9.3f}s {pause:>10.3f}s {pause / base:>6.1f} "
            f"{accept_before:>12.3f}s {accept_after:>11.3f}s"
        )
    succeeded = sum(job["state"] == "succeeded" for job in jobs.values())
    over = [
        job_id
        for job_id, job in jobs.items()
        if not 1 <= counted[load.bodies[job_id]] <= job["attempts"]
    ]
    print(f"jobs submitted {len(load.bodies)}, succeeded {succeeded}, refused {len(load.refused)}, "
          f"runs not matching their attempts {len(over)}")  # fmt: skip
    for refusal in load.refused[:5]:
        print("refused:", refusal)
    return 0 if succeeded == len(load.bodies) and not load.refused and not over else 1


async def settle(
    client: httpx.AsyncClient, names: dict[str, str], ids: set[str]
) -> dict[str, dict[str, Any]]:
    """Every job's record once all are over (or after SETTLE_SECONDS)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    jobs: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        for name in names.values():
            params: dict[str, str | int] = {"function": name, "limit": MAX_LISTED}
            for job in (await client.get("/system/jobs", params=params)).json():
                jobs[job["id"]] = job
        if sum(job["state"] in ("succeeded", "failed") for job in jobs.values()) >= len(ids):
            break
        await asyncio.sleep(0.5)
    return {job_id: job for job_id, job in jobs.items() if job_id in ids}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="jobs per second per function")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--kill-at", type=float, default=6.0, help="seconds into the load")
    parser.add_argument(
        "--node-timeout-ms",
        type=int,
        default=NODE_TIMEOUT_MS,
        help="the cluster's cluster-node-timeout (Redis's default is 15000)",
    )
    args = parser.parse_args(argv)
    if args.rate * args.duration > MAX_LISTED:
        parser.error(f"--rate times --duration is over {MAX_LISTED} jobs per function")
    return asyncio.run(measure(args))


if __name__ == "__main__":
    sys.exit(main())
