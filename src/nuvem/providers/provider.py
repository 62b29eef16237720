"""The seam between the node tier and whatever makes machines: a `NodeProvider`.

The node tier decides which machines a pool should have, by name; the provider makes the
world match (`apply`) and says what it would change (`plan`). One provider run at a time
per pool. Two implement it: `providers/terraform.py` (the terraform CLI driving a module)
and `providers/fake.py` (in memory, for tests).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from nuvem.errors import NuvemError
from nuvem.stack.pools import PoolSpec


@dataclass(frozen=True, slots=True)
class JoinInfo:
    """What a new machine needs to join the cluster. The token is a secret: providers pass
    it to the module through the environment, never through a file of their own."""

    address: str  # the Ray head's HOST:PORT
    token: str
    # Where the token lies on the machine that runs the provider (the head's own 0600
    # file, HeadRecord.token_file): the module contract's `cluster.token_file`, which the
    # `local` module's nodes read instead of a copy nuvem would have to write.
    token_file: str = ""

    def __repr__(self) -> str:  # never print the secret by accident
        return f"JoinInfo(address={self.address!r}, token_file={self.token_file!r})"


@dataclass(frozen=True, slots=True)
class NodeRequest:
    """One machine a pool should have, keyed by its name (`cpu-3`) in `apply`."""

    index: int  # stable ordinal within the pool: 3 for `cpu-3` (VM ids, addresses)
    cpus: int
    memory: int  # bytes
    gpus: int
    labels: Mapping[str, str]  # the pool's labels and nuvem's two (pool, node name)


@dataclass(frozen=True, slots=True)
class MachineInfo:
    """One machine as the provider made it (the module's `nodes` output)."""

    name: str
    address: str  # where it joins from; "" when the module cannot know yet (DHCP)
    id: str  # the provider's own id: VM id, instance id...


class ChangeKind(enum.Enum):
    CREATE = "create"
    DELETE = "delete"
    REPLACE = "replace"
    UPDATE = "update"


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """One change a provider run would make, in the provider's words."""

    kind: ChangeKind
    node: str  # the node it concerns; "" when it concerns none (a shared resource)
    resource: str  # e.g. terraform_data.node["cpu-3"]


@dataclass(frozen=True, slots=True)
class ProviderProgress:
    """A line of progress from a run: which resource, what happens to it."""

    pool: str
    message: str
    resource: str = ""


@dataclass(frozen=True, slots=True)
class ApplyResult:
    machines: dict[str, MachineInfo] = field(default_factory=dict)  # by node name


class ProviderFailed(NuvemError):
    """A provider run failed; the message carries the provider's own diagnostic."""

    status = 502


ProgressSink = Callable[[ProviderProgress], None]


class NodeProvider(Protocol):
    async def apply(
        self,
        pool: PoolSpec,
        nodes: Mapping[str, NodeRequest],
        join: JoinInfo,
        progress: ProgressSink | None = None,
    ) -> ApplyResult:
        """Make the pool's machines exactly `nodes` (by name): create the missing ones,
        remove the others, leave the rest alone. Raise ProviderFailed with the provider's
        diagnostic when it cannot; machines it did make are in the next result."""
        ...

    async def plan(
        self, pool: PoolSpec, nodes: Mapping[str, NodeRequest], join: JoinInfo
    ) -> list[PlannedChange]:
        """What `apply` with these arguments would change, without changing anything."""
        ...

    async def machines(self, pool: PoolSpec) -> dict[str, MachineInfo]:
        """The machines the provider last made for the pool (its state), by node name."""
        ...

    async def destroy(self, pool: PoolSpec, progress: ProgressSink | None = None) -> None:
        """Remove every machine of the pool and what the module made for it."""
        ...
