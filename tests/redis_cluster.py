"""A real Redis Cluster for tests: three masters and three replicas of Debian's redis-server.

Each node listens on a free loopback port, with its cluster bus on another (`cluster-port`),
no persistence, and a short `cluster-node-timeout` so that a killed master's replica is
promoted within a few seconds. `redis-cli --cluster create` assigns the slots and the
replicas; the cluster is ready once every node reports `cluster_state:ok` and every replica
has synced with its master. Every process is stopped by its PID. The fixtures live in
tests/servers.py.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from support import block_until, die_with_parent, free_port, stop_process

NODES = 6
NODE_TIMEOUT_MS = 1000
READY_SECONDS = 60.0


@dataclass
class ClusterNode:
    port: int
    process: subprocess.Popen[bytes]
    folder: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        """A plain connection to this node alone (no redirections followed)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class LocalRedisCluster:
    def __init__(
        self, binary: str, cli: str, folder: Path, node_timeout_ms: int = NODE_TIMEOUT_MS
    ) -> None:
        self.binary = binary
        self.cli = cli
        self.folder = folder
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[ClusterNode] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.address for n in self.nodes)

    def start(self) -> None:
        for _ in range(NODES):
            port, bus = free_port(), free_port()
            folder = self.folder / str(port)
            folder.mkdir()
            args = [
                self.binary,
                "--port", str(port),
                "--cluster-port", str(bus),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(folder / "nodes.conf"),
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--save", "",
                # A replica's first sync would wait 5 s for others to share it (Redis 7's
                # default); until it has synced, its master's death cannot be failed over.
                "--repl-diskless-sync-delay", "0",
                "--appendonly", "no",
                "--dir", str(folder),
            ]  # fmt: skip
            with (folder / "redis.log").open("wb") as log:
                process = subprocess.Popen(
                    args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
                )
            self.nodes.append(ClusterNode(port, process, folder))
        for node in self.nodes:
            block_until(functools.partial(self._pings, node), 30, f"redis node {node.port}")
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(n.address for n in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ok()
        self.wait_replicated()

    def _pings(self, node: ClusterNode) -> bool:
        if not node.alive:
            raise RuntimeError(f"redis node {node.port} exited; see {node.folder}/redis.log")
        try:
            with node.client() as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def _any(self) -> ClusterNode:
        return next(n for n in self.nodes if n.alive)

    def info(self, node: ClusterNode) -> dict[str, str]:
        with node.client() as client:
            info: dict[str, str] = client.execute_command("CLUSTER INFO")
        return info

    def wait_ok(self) -> None:
        """Until every live node says the cluster is ok and all agree on the epoch (after a
        failover: the promoted replica's claim has reached every node)."""

        def ok() -> bool:
            try:
                infos = [self.info(n) for n in self.nodes if n.alive]
            except redis.RedisError:
                return False
            return all(i.get("cluster_state") == "ok" for i in infos) and (
                len({i.get("cluster_current_epoch") for i in infos}) == 1
            )

        block_until(ok, READY_SECONDS, "the redis cluster to report cluster_state:ok")

    def wait_replicated(self) -> None:
        """Until every replica has synced with its master: a replica that never has refuses
        to take over ("Disconnected from master for longer than allowed")."""

        def synced(node: ClusterNode) -> bool:
            with node.client() as client:
                info: dict[str, object] = client.info("replication")
            return info.get("role") != "slave" or info.get("master_link_status") == "up"

        block_until(
            lambda: all(synced(n) for n in self.nodes if n.alive),
            READY_SECONDS,
            "every replica of the redis cluster to sync with its master",
        )

    def topology(self) -> dict[int, tuple[str, int | None]]:
        """port -> (master, replica or failed; the port of its master for a replica)."""
        with self._any().client() as client:
            nodes: dict[str, dict[str, str]] = client.execute_command("CLUSTER NODES")
        ports = {v["node_id"]: int(k.split("@")[0].rsplit(":", 1)[1]) for k, v in nodes.items()}
        found: dict[int, tuple[str, int | None]] = {}
        for node in nodes.values():
            flags = node["flags"].split(",")
            role = "failed" if "fail" in flags else "master" if "master" in flags else "replica"
            found[ports[node["node_id"]]] = (role, ports.get(node["master_id"]))
        return found

    def masters(self) -> list[ClusterNode]:
        roles = self.topology()
        return [n for n in self.nodes if n.alive and roles[n.port][0] == "master"]

    def node(self, port: int) -> ClusterNode:
        return next(n for n in self.nodes if n.port == port)

    def owner_of(self, key: str) -> ClusterNode:
        """The master serving `key`'s slot, as the cluster sees it now."""
        with self._any().client() as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            shards = client.execute_command("CLUSTER SLOTS")
        for start, end, primary, *_ in shards:
            if start <= slot <= end:
                return self.node(int(primary[1]))
        raise AssertionError(f"no master serves slot {slot} of {key!r}")

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL, by PID: the node gets no chance to hand anything over."""
        node.process.send_signal(signal.SIGKILL)
        node.process.wait()

    def wait_promoted(self, dead: ClusterNode, replica: ClusterNode) -> None:
        """Until the cluster has marked `dead` failed, `replica` serves as master in its
        place, and every live node agrees."""

        def promoted() -> bool:
            try:
                roles = self.topology()
            except redis.RedisError:
                return False
            return roles[dead.port][0] == "failed" and roles[replica.port][0] == "master"

        block_until(promoted, READY_SECONDS, f"replica {replica.port} to replace {dead.port}")
        self.wait_ok()

    def replica_of(self, master: ClusterNode) -> ClusterNode:
        return next(
            self.node(port)
            for port, (role, of) in self.topology().items()
            if role == "replica" and of == master.port
        )

    def flush(self) -> None:
        for master in self.masters():
            with master.client() as client:
                client.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            stop_process(node.process, signal.SIGTERM)


@contextlib.contextmanager
def redis_cluster_nodes(
    binary: str, cli: str, node_timeout_ms: int = NODE_TIMEOUT_MS
) -> Iterator[LocalRedisCluster]:
    folder = Path(tempfile.mkdtemp(prefix="nuvem-rcluster-"))
    cluster = LocalRedisCluster(binary, cli, folder, node_timeout_ms)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.folder, ignore_errors=True)
