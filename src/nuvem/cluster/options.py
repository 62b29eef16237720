"""What a Ray head or node is started with, and the `ray start` command line for it.

Pure: these functions only build values, so each choice below is tested without Ray.
- Token authentication always: a head started without it runs any caller's code (the
  ShadowRay hole), and Ray has no command-line flag for it, only the environment.
- Every port explicit (see ports.py); the dashboard off; Ray's metrics collection off, so
  no unauthenticated metrics port opens (nuvem has its own /metrics); no autoscaler
  monitor (nuvem's node providers add and remove machines), which would open another.
- Short health checks on the head, so a lost node is declared dead in about 2 s, not 15.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nuvem.cluster.ports import MAX_WORKER_PORT, MIN_WORKER_PORT, NodePorts
from nuvem.cluster.token import token_path
from nuvem.stack.cluster import DEFAULT_GCS_PORT, DEFAULT_OBJECT_STORE, Cluster

# Read by the GCS: health-check a node every 0.5 s, dead after 3 misses (~1.5-2.5 s).
HEALTH_CHECKS = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}
QUIET = {
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage reports sent out
    "RAY_enable_metrics_collection": "0",  # no metrics port (it would be open to anyone)
    # nuvem drains a node itself before it stops it (cluster/drain.py); Ray's own drain
    # on SIGTERM would wait up to 30 s more for the same thing.
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
}
# Variables of the calling environment that would send a Ray process somewhere else.
_DROPPED = ("RAY_AUTH_TOKEN", "RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")


@dataclass(frozen=True, slots=True)
class Offer:
    """What a node offers to replicas; None leaves the amount to Ray (all it finds)."""

    cpus: int | None = None
    gpus: int | None = None  # declared, not detected, when given: a CPU node may say 2
    memory: int | None = None  # bytes
    object_store_memory: int = DEFAULT_OBJECT_STORE  # Ray's default takes 30% of RAM
    labels: Mapping[str, str] = field(default_factory=dict)

    def args(self) -> list[str]:
        args = [f"--object-store-memory={self.object_store_memory}"]
        if self.cpus is not None:
            args.append(f"--num-cpus={self.cpus}")
        if self.gpus is not None:
            args.append(f"--num-gpus={self.gpus}")
        if self.memory is not None:
            args.append(f"--memory={self.memory}")
        if self.labels:
            args.append("--labels=" + ",".join(f"{k}={v}" for k, v in self.labels.items()))
        return args


@dataclass(frozen=True, slots=True)
class HeadOptions:
    """A head that nuvem starts beside the gateway."""

    token_file: Path
    port: int = DEFAULT_GCS_PORT  # the GCS port that nodes join
    node_ip: str = ""  # the address nodes reach it at; empty: Ray picks this machine's
    offer: Offer = field(default_factory=Offer)
    temp_dir: Path | None = None  # Ray's sessions and logs; None: Ray's /tmp/ray
    workers: tuple[int, int] = (MIN_WORKER_PORT, MAX_WORKER_PORT)  # its workers' ports


@dataclass(frozen=True, slots=True)
class ExistingHead:
    """A head that runs already (`cluster.address`); nuvem starts none."""

    address: str
    token_file: Path


@dataclass(frozen=True, slots=True)
class JoinOptions:
    """This machine joining a cluster as a node."""

    address: str  # the head's HOST:PORT
    token_file: Path
    node_ip: str = ""  # the address the node is reached at; empty: the one facing the head
    offer: Offer = field(default_factory=Offer)
    workers: tuple[int, int] = (MIN_WORKER_PORT, MAX_WORKER_PORT)  # its workers' ports
    # None: the head's temp folder. Nodes sharing one (on one machine) must not start at
    # the same moment: Ray numbers their sockets there and two would take the same name.
    temp_dir: Path | None = None


def plan(cluster: Cluster, state_dir: Path) -> HeadOptions | ExistingHead | None:
    """The head a stack's `cluster:` block asks for: one to start, one to use, or none
    (engine local)."""
    if cluster.engine == "local":
        return None
    token = Path(cluster.token_file) if cluster.token_file else token_path(state_dir)
    if cluster.address:
        return ExistingHead(cluster.address, token)
    offer = Offer(
        cpus=cluster.cpus,
        gpus=cluster.gpus,
        memory=cluster.memory,
        object_store_memory=cluster.object_store_memory,
        labels=dict(cluster.labels),
    )
    return HeadOptions(token, port=cluster.port, node_ip=cluster.node_ip, offer=offer)


def ray_start() -> list[str]:
    """`ray start`, run by this interpreter (the `ray` script may not be on PATH)."""
    return [sys.executable, "-m", "ray.scripts.scripts", "start", "--block"]


def head_command(options: HeadOptions, ports: NodePorts, client_port: int | None) -> list[str]:
    """`ray start --head` for `options`; `client_port` only where Ray Client is installed,
    which otherwise starts on 10001 by itself."""
    args = [
        *ray_start(),
        "--head",
        f"--port={options.port}",
        "--include-dashboard=false",
        "--no-monitor",
        "--disable-usage-stats",
        *ports.args(),
        *options.offer.args(),
    ]
    if options.node_ip:
        args.append(f"--node-ip-address={options.node_ip}")
    if client_port is not None:
        args.append(f"--ray-client-server-port={client_port}")
    if options.temp_dir is not None:
        args.append(f"--temp-dir={options.temp_dir}")
    return args


def join_command(options: JoinOptions, ports: NodePorts) -> list[str]:
    args = [
        *ray_start(),
        f"--address={options.address}",
        "--disable-usage-stats",
        *ports.args(),
        *options.offer.args(),
    ]
    if options.node_ip:
        args.append(f"--node-ip-address={options.node_ip}")
    if options.temp_dir is not None:
        args.append(f"--temp-dir={options.temp_dir}")
    return args


def auth_environ(token_file: Path) -> dict[str, str]:
    """The variables that make a Ray process present the token in `token_file`."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}


def ray_environ(base: Mapping[str, str], token_file: Path, *, head: bool) -> dict[str, str]:
    """The environment of a `ray start`: `base` without Ray settings that point elsewhere,
    plus token authentication (and, on the head, the short health checks)."""
    environ = {k: v for k, v in base.items() if k not in _DROPPED}
    environ.update(QUIET)
    environ.update(auth_environ(token_file))
    if head:
        environ.update(HEALTH_CHECKS)
    return environ
