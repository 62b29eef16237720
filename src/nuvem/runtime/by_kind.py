"""`ByKind`: one runtime for the controller, two underneath: image functions go to the
container runtime, every other function to the process runtime."""

from __future__ import annotations

from nuvem.runtime.environment import Environment
from nuvem.runtime.replica import Pending, Replica, Runtime, SetupFailed
from nuvem.stack.function import FunctionSpec

NO_CONTAINERS = (
    "no container engine runs image functions here",
    "install podman or Docker (docs/containers.md), or run it as a handler",
)


class ByKind:
    def __init__(
        self,
        processes: Runtime,
        containers: Runtime | None,
        missing: tuple[str, str] = NO_CONTAINERS,
    ) -> None:
        self.processes = processes
        self.containers = containers  # None: no container engine here
        self.missing = missing  # why not, and the fix

    async def start(self, spec: FunctionSpec, env: Environment, replica_id: str) -> Replica:
        if not spec.serves_http:
            return await self.processes.start(spec, env, replica_id)
        if self.containers is None:
            why, fix = self.missing
            raise SetupFailed(f"function {spec.name!r}: {why}", fix)
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
