"""`FakeProvider`: a `NodeProvider` in memory, for the node tier's tests.

It makes no machines: `apply` records the node set it was given and answers with one
`MachineInfo` per node (an address from the node's index, a fresh id each time a node is
created). It can be told to fail the next applies with a diagnostic, the way Terraform
would, and to hold applies until a test lets them go, so a test can see a pool while its
machines are provisioning.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from nuvem.providers.provider import (
    ApplyResult,
    ChangeKind,
    JoinInfo,
    MachineInfo,
    NodeRequest,
    PlannedChange,
    ProgressSink,
    ProviderFailed,
    ProviderProgress,
)
from nuvem.stack.pools import PoolSpec


@dataclass(frozen=True, slots=True)
class Applied:
    """One call of `apply`, as the fake saw it (failed ones too)."""

    pool: str
    nodes: dict[str, NodeRequest]
    join: JoinInfo
    failed: bool


@dataclass(slots=True)
class _Failure:
    remaining: int
    diagnostic: str
    create: int  # nodes still created by a failing apply (Terraform stops part way)


class FakeProvider:
    """Records every apply; `machines` is exactly what the last applies made."""

    def __init__(self) -> None:
        self.applied: list[Applied] = []
        self.destroyed: list[str] = []
        self._machines: dict[str, dict[str, MachineInfo]] = {}
        self._requests: dict[str, dict[str, NodeRequest]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._failure: _Failure | None = None
        self._serial = 0
        self._gate: asyncio.Event | None = None
        self.running = 0  # applies in flight now, all pools together

    def fail_next(self, count: int = 1, diagnostic: str = "fake failure", create: int = 0) -> None:
        """Make the next `count` applies raise ProviderFailed with `diagnostic`; each still
        creates up to `create` of the missing nodes first (removals are not made)."""
        self._failure = _Failure(count, diagnostic, create)

    def hold(self) -> None:
        """Make applies wait until `release()`, as slow machines would."""
        self._gate = asyncio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    def node_sets(self, pool: str) -> list[set[str]]:
        """The node names of every apply for `pool`, in order."""
        return [set(applied.nodes) for applied in self.applied if applied.pool == pool]

    async def apply(
        self,
        pool: PoolSpec,
        nodes: Mapping[str, NodeRequest],
        join: JoinInfo,
        progress: ProgressSink | None = None,
    ) -> ApplyResult:
        async with self._lock(pool.name):
            self.running += 1
            try:
                return await self._apply(pool, dict(nodes), join, progress)
            finally:
                self.running -= 1

    async def _apply(
        self,
        pool: PoolSpec,
        nodes: dict[str, NodeRequest],
        join: JoinInfo,
        progress: ProgressSink | None,
    ) -> ApplyResult:
        gate = self._gate
        if gate is not None:
            await gate.wait()
        current = self._machines.setdefault(pool.name, {})
        requests = self._requests.setdefault(pool.name, {})
        failure = self._take_failure()
        self.applied.append(Applied(pool.name, nodes, join, failure is not None))
        missing = [name for name in nodes if name not in current]
        if failure is not None:
            missing = missing[: failure.create]
        for name in missing:
            self._serial += 1
            current[name] = MachineInfo(name, _address(nodes[name].index), f"fake-{self._serial}")
            requests[name] = nodes[name]
            _say(progress, pool.name, "create", name)
        if failure is not None:
            raise ProviderFailed(
                f"pool {pool.name}: apply failed: {failure.diagnostic}",
                hint="the fake was told to fail (FakeProvider.fail_next)",
            )
        for name in [name for name in current if name not in nodes]:
            del current[name]
            requests.pop(name, None)
            _say(progress, pool.name, "destroy", name)
        return ApplyResult(machines=dict(current))

    async def plan(
        self, pool: PoolSpec, nodes: Mapping[str, NodeRequest], join: JoinInfo
    ) -> list[PlannedChange]:
        current = self._machines.get(pool.name, {})
        requests = self._requests.get(pool.name, {})
        changes: list[PlannedChange] = []
        for name in sorted(set(nodes) | set(current)):
            if name not in current:
                kind = ChangeKind.CREATE
            elif name not in nodes:
                kind = ChangeKind.DELETE
            elif requests.get(name) != nodes[name]:
                kind = ChangeKind.REPLACE  # a machine's shape is fixed when it is made
            else:
                continue
            changes.append(PlannedChange(kind, name, f'fake_node.node["{name}"]'))
        return changes

    async def machines(self, pool: PoolSpec) -> dict[str, MachineInfo]:
        return dict(self._machines.get(pool.name, {}))

    async def destroy(self, pool: PoolSpec, progress: ProgressSink | None = None) -> None:
        async with self._lock(pool.name):
            for name in self._machines.pop(pool.name, {}):
                _say(progress, pool.name, "destroy", name)
            self._requests.pop(pool.name, None)
            self.destroyed.append(pool.name)

    def _lock(self, pool: str) -> asyncio.Lock:
        return self._locks.setdefault(pool, asyncio.Lock())

    def _take_failure(self) -> _Failure | None:
        failure = self._failure
        if failure is None:
            return None
        failure.remaining -= 1
        if failure.remaining <= 0:
            self._failure = None
        return failure


def _address(index: int) -> str:
    return f"10.200.{index // 250}.{index % 250 + 1}"


def _say(progress: ProgressSink | None, pool: str, verb: str, name: str) -> None:
    if progress is not None:
        resource = f'fake_node.node["{name}"]'
        progress(ProviderProgress(pool, f"{resource}: {verb} complete", resource))
