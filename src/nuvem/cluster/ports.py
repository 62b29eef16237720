"""Every port a Ray node listens on, chosen by nuvem instead of left to Ray's defaults.

Ray's defaults collide: its metrics export port defaults to 8080, nuvem's gateway port,
and two nodes on one machine fight over the fixed dashboard-agent port (seconds of bind
retries). So each node gets free ports of its own, outside the range its workers take.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, fields

# Ray's worker range; its client server must lie outside it (Ray refuses otherwise).
MIN_WORKER_PORT = 10002
MAX_WORKER_PORT = 19999
# Never handed to Ray: nuvem's gateway default, and Ray's own fixed defaults that another
# Ray on the machine may already hold (GCS, client server, dashboard, agents, autoscaler).
RESERVED = frozenset({8080, 6379, 10001, 8265, 52365, 44217, 44227})

# Ports this process chose already: a port is free again once chosen and released, so
# two nodes started at once would otherwise be handed the same ones.
_handed_out: set[int] = set()
_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class NodePorts:
    """The ports of one node's raylet and agents (all nodes, the head included)."""

    node_manager: int  # raylet gRPC: leases, worker and object transfers (token required)
    object_manager: int  # raylet's object transfers between nodes (token required)
    metrics_export: int  # Prometheus text; nuvem turns Ray's metrics collection off
    dashboard_agent_listen: int  # the agent's HTTP port (unused by minimal Ray)
    dashboard_agent_grpc: int  # the agent's gRPC port, the raylet's metrics agent
    runtime_env_agent: int  # builds runtime environments, bound to the node's address
    min_worker: int = MIN_WORKER_PORT  # each worker process takes one port in this range
    max_worker: int = MAX_WORKER_PORT

    def args(self) -> list[str]:
        return [
            f"--node-manager-port={self.node_manager}",
            f"--object-manager-port={self.object_manager}",
            f"--metrics-export-port={self.metrics_export}",
            f"--dashboard-agent-listen-port={self.dashboard_agent_listen}",
            f"--dashboard-agent-grpc-port={self.dashboard_agent_grpc}",
            f"--runtime-env-agent-port={self.runtime_env_agent}",
            f"--min-worker-port={self.min_worker}",
            f"--max-worker-port={self.max_worker}",
        ]

    def listening(self) -> list[int]:
        """The single ports (the worker range aside)."""
        return [getattr(self, f.name) for f in fields(self) if "worker" not in f.name]


def parse_worker_ports(text: str) -> tuple[int, int]:
    """`FIRST-LAST` -> (first, last), the ports a node's workers take; ValueError with the
    fix otherwise. Nodes sharing one machine need ranges apart, or their workers collide."""
    first, sep, last = text.partition("-")
    if not sep or not first.strip().isdigit() or not last.strip().isdigit():
        raise ValueError(f"worker ports {text!r} are not FIRST-LAST, e.g. 20000-20199")
    low, high = int(first), int(last)
    if not 1024 <= low < high <= 65535:
        raise ValueError(
            f"worker ports {text!r} must be a range within 1024-65535 with FIRST below LAST, "
            "e.g. 20000-20199"
        )
    if any(port in RESERVED for port in range(low, high + 1)):
        raise ValueError(
            f"worker ports {text!r} include a port Ray or nuvem holds already "
            f"({', '.join(str(p) for p in sorted(RESERVED) if low <= p <= high)}); "
            "choose a range without it"
        )
    return low, high


def free_node_ports(workers: tuple[int, int] = (MIN_WORKER_PORT, MAX_WORKER_PORT)) -> NodePorts:
    """Free ports for one node, none in its worker range nor in RESERVED."""
    first, second, third, fourth, fifth, sixth = free_ports(
        6, avoid=range(workers[0], workers[1] + 1)
    )
    return NodePorts(first, second, third, fourth, fifth, sixth, workers[0], workers[1])


def free_ports(count: int, avoid: range = range(0)) -> list[int]:
    """`count` distinct ports free on every interface now (Ray's raylet and GCS listen on
    all of them), held open together while chosen so that they differ, skipping those in
    `avoid` and RESERVED."""
    held: list[socket.socket] = []
    ports: list[int] = []
    with _lock:
        try:
            for _ in range(count * 20):
                if len(ports) == count:
                    break
                sock = socket.socket()
                held.append(sock)
                sock.bind(("", 0))
                port: int = sock.getsockname()[1]
                if port not in avoid and port not in RESERVED and port not in _handed_out:
                    ports.append(port)
        finally:
            for sock in held:
                sock.close()
        _handed_out.update(ports)
    if len(ports) < count:
        raise OSError(f"found only {len(ports)} of {count} free ports")
    return ports


def port_free(port: int) -> bool:
    """Whether something could listen on `port` on every interface now."""
    with contextlib.closing(socket.socket()) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True
