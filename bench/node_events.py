"""A node joins, and a node is lost, timed through a gateway of the Ray runtime.

- Join: a function placed on a label that only the new node has waits pending; `nuvem node
  join` starts that node; times from the command to its "joined" line, to the replica ready
  there and to the first call answered.
- Loss: a function spread over the first node and the new one; SIGKILL of every process of
  the new node at once (its replicas' workers too, as when its machine dies) while a few
  callers keep calling; times to the gateway listing no replica there, to the head listing
  the node dead, and to every replica ready on the survivor with a call answered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from cluster_rig import (
    LATE_IP,
    NODE_IP,
    Cluster,
    Gateway,
    err,
    replica_nodes,
    with_descendants,
)
from echo import BODY, BenchError, Server
from rich import box
from rich.table import Table

from nuvem.cluster import record
from nuvem.cluster.membership import Membership, NodeState
from nuvem.cluster.process_session import session_members

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
LATE = "late"  # placed on the label only the late node has
MOVING = "moving"  # spread over both worker nodes, then loses one
NODE_TIMEOUT = 120.0  # seconds for a node to join, or a lost node's replicas to move
POLL = 0.05
CALLERS = 4  # threads calling while the lost node's replicas move
CALL_PAUSE = 0.02  # seconds between a caller's calls: a light load (at most ~200 calls/s)


def late_spec() -> dict[str, Any]:
    return {
        "name": LATE,
        "handler": "functions:echo",
        "root": str(EXAMPLES),
        "resources": {"cpu": 0.5},
        "placement": {"labels": {"late": "yes"}},
    }


def moving_spec() -> dict[str, Any]:
    return {
        "name": MOVING,
        "handler": "functions:echo",
        "root": str(EXAMPLES),
        "idempotent": True,
        "resources": {"cpu": 0.5},
        "placement": {"labels": {"spare": "yes"}, "spread": True},
        "scaling": {"min": 2, "max": 2},
    }


@dataclasses.dataclass(frozen=True, slots=True)
class Joined:
    node_joined_s: float  # `nuvem node join` started -> it said "joined"
    replica_ready_s: float  # -> the pending replica ready on that node
    first_call_s: float  # -> the first call answered by it


@dataclasses.dataclass(frozen=True, slots=True)
class Lost:
    gone_s: float  # SIGKILL -> the gateway lists no ready replica on the node
    dead_s: float  # -> the head lists the node dead
    replaced_s: float  # -> every replica ready on a surviving node, and a call answered
    calls: int  # calls the callers made from the SIGKILL until the replicas had moved
    failed: int  # of them, answered other than 200 (or not at all)
    slowest_s: float  # the slowest of them


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    began: float  # monotonic
    seconds: float
    status: int  # 0: no answer at all


class Callers:
    """A few threads calling a function, with a short pause after each call, timed."""

    def __init__(self, gw: Gateway, function: str, threads: int = CALLERS) -> None:
        self.gw = gw
        self.function = function
        self.stop = threading.Event()
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Callers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self) -> None:
        headers = {"authorization": f"Bearer {self.gw.api_key}"}
        with httpx.Client(base_url=self.gw.base, headers=headers, timeout=30) as client:
            while not self.stop.is_set():
                began = time.monotonic()
                try:
                    code = client.post(f"/function/{self.function}", content=BODY).status_code
                except httpx.HTTPError:
                    code = 0
                with self._lock:
                    self.calls.append(Call(began, time.monotonic() - began, code))
                self.stop.wait(CALL_PAUSE)

    def between(self, first: float, last: float) -> list[Call]:
        """The calls begun from `first` to `last` (they may have ended after)."""
        with self._lock:
            return [call for call in self.calls if first <= call.began <= last]


@contextlib.contextmanager
def late_node(found: Cluster, workdir: Path) -> Iterator[tuple[Server, Path, float]]:
    """`nuvem node join` of a node with the label `late=yes`; yields its process, its state
    folder and when it was started. Every process of the node ends at exit."""
    state = found.root / "late-state"
    cli = [sys.executable, "-m", "nuvem.cli.main", "node", "join", found.address]
    cli += ["--token-file", str(found.token.path), "--node-ip", LATE_IP, "--cpus", "2"]
    cli += ["--label", "late=yes", "--label", "spare=yes", "--object-store-memory", "80Mi"]
    cli += ["--state-dir", str(state)]  # its replicas' code and environments too
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUVEM_", "RAY_"))}
    began = time.monotonic()
    server = Server("nuvem node join", cli, env, workdir / "late-node.log")
    try:
        yield server, state, began
    finally:
        with contextlib.suppress(BenchError):
            kill_node(server, state)
        server.stop(timeout=40)


def measure_join(gw: Gateway, node: Server, began: float) -> Joined:
    joined = ready = None
    deadline = began + NODE_TIMEOUT
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise BenchError(f"nuvem node join exited:\n{node.log_tail()}")
        if joined is None and "joined " in node.log.read_text(errors="replace"):
            joined = time.monotonic()
        if ready is None and gw.ready(LATE, 1):
            ready = time.monotonic()
        if ready is not None:
            code = gw.call(LATE)
            if code == 200:
                served = time.monotonic()
                joined = joined or served  # its line came late
                return Joined(joined - began, ready - began, served - began)
            raise BenchError(f"the first call to {LATE} answered {code}")
        time.sleep(POLL)
    raise BenchError(f"{LATE} was not served within {NODE_TIMEOUT:.0f}s of the join")


def node_processes(state: Path) -> list[int]:
    """Every process of the late node: `nuvem node join`, the session of its Ray processes,
    and what those started in sessions of their own (the replicas' workers)."""
    found = _node_record(state)
    return with_descendants({found.pid, found.ray_pid, *session_members(found.ray_pid)})


def _node_record(state: Path) -> record.NodeRecord:
    found = record.read_node(state)
    if found is None:
        raise BenchError(f"the late node wrote no {record.NODE_RECORD} in {state}")
    return found


def kill_node(node: Server, state: Path) -> None:
    """SIGKILL every process of the late node at once, as a crash of its machine would."""
    try:
        victims = node_processes(state)
    except Exception as exc:
        raise BenchError(f"cannot find the late node's processes: {exc}") from None
    for pid in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        node.process.wait(10)


def measure_loss(found: Cluster, gw: Gateway, node: Server, state: Path) -> Lost | str:
    """SIGKILL the late node under `moving`; a string when the test cannot be made here."""
    gw.deploy(moving_spec())
    gw.wait_ready(MOVING, 2)
    where = replica_nodes(gw.status(MOVING))
    if sorted(set(where)) != sorted({NODE_IP, LATE_IP}):
        return f"not measured: Ray placed both replicas of {MOVING} on {where}"
    raylet = _node_record(state)
    membership = Membership(found.address, found.token)
    with Callers(gw, MOVING) as callers:
        time.sleep(0.5)  # calls going to both replicas
        killed = time.monotonic()
        kill_node(node, state)
        gone = dead = None
        deadline = killed + NODE_TIMEOUT
        while time.monotonic() < deadline:
            where = replica_nodes(gw.status(MOVING))
            if gone is None and LATE_IP not in where:
                gone = time.monotonic()
            if dead is None:
                seen = membership.node_at(raylet.address, raylet.port)
                if seen is None or seen.state is NodeState.DEAD:
                    dead = time.monotonic()
            if where == [NODE_IP, NODE_IP] and dead is not None and gw.call(MOVING) == 200:
                replaced = time.monotonic()
                break
            time.sleep(POLL)
        else:
            raise BenchError(f"{MOVING}'s replicas did not move within {NODE_TIMEOUT:.0f}s")
    calls = callers.between(killed, replaced)
    return Lost(
        (gone or replaced) - killed,
        dead - killed,
        replaced - killed,
        len(calls),
        sum(call.status != 200 for call in calls),
        max((call.seconds for call in calls), default=0.0),
    )


def join_then_lose(found: Cluster, gw: Gateway, workdir: Path) -> tuple[Joined, Lost | str]:
    """Both events, on the Ray runtime's gateway `gw`; the late node is gone afterwards."""
    gw.deploy(late_spec())
    gw.server.wait_until(f"{LATE} pending", lambda: bool(gw.status(LATE)["pending"]), NODE_TIMEOUT)
    with late_node(found, workdir) as (node, state, began):
        joined = measure_join(gw, node, began)
        err.print(f"  first call on the new node {joined.first_call_s:.2f}s after the join")
        return joined, measure_loss(found, gw, node, state)


def render_node(joined: Joined | None, lost: Lost | str | None) -> Table:
    table = Table(title="a node joins, then is lost (Ray runtime)", box=box.SIMPLE_HEAD)
    table.add_column("from")
    table.add_column("to")
    table.add_column("seconds", justify="right")
    if joined is not None:
        start = "`nuvem node join`"
        table.add_row(start, "node joined (its `joined` line)", f"{joined.node_joined_s:.2f}")
        table.add_row(start, "pending replica ready on it", f"{joined.replica_ready_s:.2f}")
        table.add_row(start, "[bold]first call served there[/]", f"{joined.first_call_s:.2f}")
    if isinstance(lost, Lost):
        start = "SIGKILL of the node"
        table.add_row(start, "its replica gone from the gateway", f"{lost.gone_s:.2f}")
        table.add_row(start, "the head lists it dead", f"{lost.dead_s:.2f}")
        table.add_row(
            start,
            "[bold]replicas ready on the survivor, a call answered[/]",
            f"{lost.replaced_s:.2f}",
        )
        table.add_row(
            "",
            f"meanwhile {CALLERS} callers: {lost.calls} calls, {lost.failed} failed, "
            "the slowest took",
            f"{lost.slowest_s:.2f}",
        )
    elif lost is not None:
        table.add_row("SIGKILL of the node", lost, "-")
    return table
