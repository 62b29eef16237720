"""`ByKind`: one runtime for the controller, two underneath: image functions go to the
container runtime, every other function to the process runtime."""

from __future__ import annotations

from nuvem.runtime.environment import Environment
from nuvem.runtime.replica import Pending, Replica, Runtime, SetupFailed
from nuvem.stack.function import FunctionSpec


class ByKind:
    def __init__(self, processes: Runtime, containers: Runtime | None) -> None:
        self.processes = processes
        self.containers = containers  # None: this engine runs no containers (yet)

    async def start(self, spec: FunctionSpec, env: Environment, replica_id: str) -> Replica:
        if not spec.serves_http:
            return await self.processes.start(spec, env, replica_id)
        if self.containers is None:
            raise SetupFailed(
                f"function {spec.name!r}: image functions do not run on a cluster yet",
                "run it with the local engine (no cluster: block), or as a handler",
            )
        return await self.containers.start(spec, env, replica_id)

    def pending(self, function: str) -> list[Pending]:
        found = self.processes.pending(function)
        if self.containers is not None:
            found += self.containers.pending(function)
        return found

    async def close(self) -> None:
        await self.processes.close()
        if self.containers is not None:
            await self.containers.close()
