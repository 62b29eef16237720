"""Cluster membership on this machine: how fast a Ray head starts, a node joins, a lost
node is noticed, and what an idle node costs in memory.

    .venv/bin/python bench/nodes.py [--nodes 2] [--rounds 1]

Starts a head the way `nuvem up` does (token, every port chosen, dashboard and metrics
off), then joins nodes one after another at 127.0.0.3 and up, as `nuvem node join` does,
and prints for each round:
- head start: from `ray start --head` to the head node alive in its GCS;
- node join: from `ray start --address` to the node listed alive (the token checked
  first), for each node;
- idle memory per node: RSS and PSS of all its processes after 5 s idle (PSS counts
  pages shared between processes once, so it is the better sum);
- lost node: from SIGKILL of every process of one node to the head listing it dead;
- leave: from the start of a drain to every process of the other node ended.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from nuvem.cluster.head import RayHead
from nuvem.cluster.membership import NodeState
from nuvem.cluster.node import RayNode
from nuvem.cluster.options import HeadOptions, JoinOptions, Offer
from nuvem.cluster.ports import free_ports
from nuvem.cluster.process_session import ProcessSession
from nuvem.cluster.token import ClusterToken, ensure_token

STORE = 80 * 2**20  # a small object store, as in the tests
IDLE_S = 5.0


def memory(session: ProcessSession) -> tuple[float, float]:
    """RSS and PSS (MiB) summed over every process of the session."""
    rss = pss = 0
    for pid in session.members():
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, pss / 1024


def one_round(root: Path, token: ClusterToken, nodes: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ("head", "join", "rss", "pss", "lost", "leave")}
    started = time.monotonic()
    head = RayHead.start(
        HeadOptions(
            token.path,
            port=free_ports(1)[0],
            node_ip="127.0.0.2",
            offer=Offer(cpus=1, object_store_memory=STORE),
            temp_dir=root / "ray",
        ),
        root / "head.log",
    )
    out["head"].append(time.monotonic() - started)
    joined: list[RayNode] = []
    try:
        for n in range(nodes):
            options = JoinOptions(
                head.address,
                token.path,
                node_ip=f"127.0.0.{3 + n}",
                offer=Offer(cpus=1, object_store_memory=STORE),
                workers=(20000 + 200 * n, 20199 + 200 * n),
                temp_dir=root / f"ray-{n}",
            )
            started = time.monotonic()
            joined.append(RayNode.join(options, root / f"node-{n}.log"))
            out["join"].append(time.monotonic() - started)
        time.sleep(IDLE_S)  # let start-up work settle before reading memory
        head_rss, head_pss = memory(head.session)
        print(f"  head idle: RSS {head_rss:.0f} MiB, PSS {head_pss:.0f} MiB")
        for node in joined:
            rss, pss = memory(node.session)
            out["rss"].append(rss)
            out["pss"].append(pss)
        lost, *rest = joined
        killed = time.monotonic()
        lost.kill()
        while lost.state() is not NodeState.DEAD:
            time.sleep(0.02)
        out["lost"].append(time.monotonic() - killed)
        dead = lost.membership.node_at(lost.node.address, lost.node.port)
        print(f"  lost node: {dead.death if dead else 'gone from the head'}")
        for node in rest:
            started = time.monotonic()
            node.leave()
            out["leave"].append(time.monotonic() - started)
    finally:
        for node in joined:
            node.kill()
        head.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2, help="worker nodes to join (>= 2)")
    parser.add_argument("--rounds", type=int, default=1, help="head starts to average over")
    args = parser.parse_args()
    totals: dict[str, list[float]] = {}
    # One token for every round: a process talks to one cluster, with one token.
    state = Path(tempfile.mkdtemp(prefix="nuvem-bench-state-"))
    token = ensure_token(state)
    for number in range(args.rounds):
        root = Path(tempfile.mkdtemp(prefix="nuvem-bench-", dir="/tmp"))
        try:
            print(f"round {number + 1}")
            for key, values in one_round(root, token, max(2, args.nodes)).items():
                totals.setdefault(key, []).extend(values)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    units = {"rss": "MiB", "pss": "MiB"}
    names = {
        "head": "head start",
        "join": "node join -> alive",
        "rss": "idle node RSS",
        "pss": "idle node PSS",
        "lost": "SIGKILL -> dead",
        "leave": "drain + leave",
    }
    for key, values in totals.items():
        unit = units.get(key, "s")
        shown = ", ".join(f"{v:.2f}" if unit == "s" else f"{v:.0f}" for v in values)
        print(f"{names[key]:>20}: median {statistics.median(values):.2f} {unit} ({shown})")


if __name__ == "__main__":
    main()
