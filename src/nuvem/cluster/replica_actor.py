"""`ReplicaActor`: the Ray actor that holds one replica's place on a node.

Ray does what it is best at here: it finds a node with the replica's CPUs, GPUs, memory and
labels, reserves them for the actor's life, sets `CUDA_VISIBLE_DEVICES` to the devices it
granted, and says when the node is lost. The actor wraps a `ReplicaHost`, which runs the
worker in the function's own environment; calls never travel through Ray.

This module is imported on the nodes by Ray; it must not import the gateway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nuvem.cluster import ray_api
from nuvem.cluster.log_buffer import LogLine
from nuvem.cluster.replica_host import Endpoint, ReplicaHost
from nuvem.config import Settings
from nuvem.stack.function import FunctionSpec


class ReplicaActor:
    """Made remote with `ray.remote(...)` by the runtime; plain Python, so it is testable."""

    def __init__(self, node_ip: str | None = None, state_dir: str | None = None) -> None:
        if node_ip is None:
            node_ip = ray_api.node_ip()
        # The node's own state folder: `nuvem node join` sets NUVEM_STATE_DIR for Ray.
        state = Path(state_dir) if state_dir else Settings.from_env().state_dir / "node"
        self.host = ReplicaHost(node_ip, state)

    async def prepare(
        self,
        spec_json: str,
        replica_id: str,
        code: list[Any],  # [ObjectRef of the bundle]: nested, so Ray does not fetch it for us
        digest: str,
        secret: bytes,
        folder: str = "",  # the function's folder inside the bundle ("": its top)
    ) -> tuple[str, int, str]:
        """Code (fetched only when this node lacks this version), environment, port."""
        spec = FunctionSpec.model_validate_json(spec_json)
        cached = (self.host.state_dir / "code" / digest).is_dir()
        data = b"" if cached else await _fetch(code[0])
        endpoint: Endpoint = await self.host.prepare(spec, replica_id, data, digest, secret, folder)
        return endpoint.host, endpoint.port, self.host.node_ip

    async def serve(self, wait_s: float) -> int:
        return await self.host.serve(wait_s)

    async def wait(self) -> int:
        return await self.host.wait()

    def terminate(self) -> None:
        self.host.terminate()

    def kill(self) -> None:
        self.host.kill()

    def status(self) -> tuple[int | None, list[LogLine], int]:
        """What the gateway polls about once a second: memory, new log lines, dropped lines."""
        lines, dropped = self.host.collect_logs()
        return self.host.rss(), lines, dropped

    async def close(self) -> None:
        await self.host.close()


async def _fetch(ref: Any) -> bytes:
    data = await ref
    if not isinstance(data, bytes):
        raise TypeError(f"a code bundle must be bytes, got {type(data).__name__}")
    return data
