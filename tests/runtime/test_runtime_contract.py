"""The runtime contract: every runtime starts, calls, drains, kills and reports the same way.

One suite, parametrized over the runtimes: the in-process fake and the local one (real
worker processes running tests/handlers/handlers.py). A cluster runtime joins by adding
one entry to RUNTIMES: an async context manager that yields the runtime and the
environment its replicas start in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nuvem.errors import FunctionFailed, ReplicaDied
from nuvem.runtime.environment import Environment
from nuvem.runtime.fake import FakeRuntime
from nuvem.runtime.local import LocalRuntime, prestart
from nuvem.runtime.logbook import LogBook
from nuvem.runtime.protocol import CallMeta
from nuvem.runtime.replica import Replica, Runtime, SetupFailed
from nuvem.runtime.replica_state import ReplicaState
from nuvem.runtime.warm_pool import WarmPool
from nuvem.stack.function import FunctionSpec
from support import HANDLERS, PLATFORM_PYTHON, wait_until

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def fake_runtime() -> AsyncIterator[tuple[Runtime, Environment]]:
    runtime = FakeRuntime()
    yield runtime, PLATFORM_PYTHON
    await runtime.close()


@contextlib.asynccontextmanager
async def local_runtime() -> AsyncIterator[tuple[Runtime, Environment]]:
    runtime = LocalRuntime(LogBook(), setup_timeout=60, warm_workers=0)
    try:
        yield runtime, PLATFORM_PYTHON
    finally:
        await runtime.close()


class PrestartingRuntime(LocalRuntime):
    """The local runtime whose every replica takes a worker pre-started without an event
    loop, as `nuvem up` starts a stack's first ones (cli/launch.py)."""

    async def start(self, spec: FunctionSpec, env: Environment, replica_id: str) -> Replica:
        assert prestart(self.pool, spec, None) == 1
        hits = self.pool.hits
        replica = await super().start(spec, env, replica_id)
        assert self.pool.hits == hits + 1
        return replica


@contextlib.asynccontextmanager
async def prestarted_runtime() -> AsyncIterator[tuple[Runtime, Environment]]:
    runtime = PrestartingRuntime(LogBook(), setup_timeout=60, pool=WarmPool(size=1))
    try:
        yield runtime, PLATFORM_PYTHON
    finally:
        await runtime.close()


# Set by tests/cluster/test_ray_contract.py, which runs this suite in a process of its own
# (that process becomes the cluster's driver): "HOST:PORT,TOKEN_FILE,LABEL=VALUE,NODE_IP",
# the node with that label being the only one, at NODE_IP.
RAY_CONTRACT = "NUVEM_TEST_RAY_CONTRACT"


@contextlib.asynccontextmanager
async def ray_runtime() -> AsyncIterator[tuple[Runtime, Environment]]:
    from nuvem.cluster import driver
    from nuvem.cluster.ray_runtime import RayRuntime
    from nuvem.cluster.token import read_token

    address, token_file, _, _ = os.environ[RAY_CONTRACT].split(",")
    runtime = RayRuntime(
        LogBook(),
        setup_timeout=60,
        connect=lambda: driver.connect(address, read_token(Path(token_file))),
    )
    try:
        yield runtime, PLATFORM_PYTHON
    finally:
        await runtime.close()


RUNTIMES: dict[str, Callable[[], contextlib.AbstractAsyncContextManager[Any]]] = {
    "fake": fake_runtime,
    "local": local_runtime,
    "local-prestarted": prestarted_runtime,
}
if os.environ.get(RAY_CONTRACT):
    RUNTIMES = {"ray": ray_runtime}


@dataclass
class Harness:
    runtime: Runtime
    env: Environment
    node: str = "local"  # where its replicas run
    started: list[Replica] = field(default_factory=list)

    def spec(self, handler: str, **overrides: Any) -> FunctionSpec:
        placement = {}
        if os.environ.get(RAY_CONTRACT):  # on a worker node, not beside the driver
            key, _, value = os.environ[RAY_CONTRACT].split(",")[2].partition("=")
            placement = {"placement": {"labels": {key: value}}, "resources": {"cpu": 0.1}}
        return FunctionSpec.model_validate(
            {"name": "f", "handler": handler, "root": str(HANDLERS), **placement, **overrides}
        )

    async def start(self, handler: str, **overrides: Any) -> Replica:
        spec = self.spec(handler, **overrides)
        replica = await self.runtime.start(spec, self.env, f"f-{len(self.started) + 1}")
        self.started.append(replica)
        return replica


@pytest.fixture(params=sorted(RUNTIMES))
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with RUNTIMES[request.param]() as (runtime, env):
        harness = Harness(runtime, env)
        if request.param == "ray":
            harness.node = os.environ[RAY_CONTRACT].split(",")[3]
        try:
            yield harness
        finally:
            for replica in harness.started:
                replica.kill("the test is over")
            async with asyncio.timeout(10):
                await asyncio.gather(*(r.wait_dead() for r in harness.started))


def call(query: str = "", path: str = "/") -> CallMeta:
    return CallMeta("POST", path, query, [("x-test", "yes")])


async def test_a_started_replica_is_ready_and_says_what_it_is(harness: Harness) -> None:
    replica = await harness.start("handlers:echo")
    assert replica.state is ReplicaState.READY
    assert (replica.id, replica.function) == ("f-1", "f")
    assert replica.fingerprint == harness.spec("handlers:echo").fingerprint()
    assert replica.node == harness.node
    assert replica.pid > 0
    assert (replica.exit_cause, replica.retired, replica.inflight) == (None, False, 0)
    assert replica.oldest_call_age() == 0.0
    memory = replica.memory()
    assert memory is None or memory > 0


async def test_calls_are_answered_with_what_the_handler_returned(harness: Harness) -> None:
    replica = await harness.start("handlers:describe")
    answers = await asyncio.gather(
        *(replica.submit(call(f"n={n}", "/sub"), f"body {n}".encode()) for n in range(5))
    )
    for n, answer in enumerate(answers):
        assert answer.status == 200
        assert ("content-type", "application/json") in answer.headers
        seen = json.loads(answer.body)
        assert (seen["path"], seen["query"], seen["body"]) == ("/sub", {"n": str(n)}, f"body {n}")
        assert seen["headers"]["x-test"] == "yes"
        assert seen["replica"] in ("f-1", None)  # the fake runs in this process


async def test_a_handler_error_fails_its_call_and_the_replica_lives_on(harness: Harness) -> None:
    replica = await harness.start("handlers:fail")
    with pytest.raises(FunctionFailed, match="raised ValueError: the input was not acceptable"):
        await replica.submit(call(), b"")
    assert replica.state is ReplicaState.READY
    with pytest.raises(FunctionFailed):
        await replica.submit(call(), b"")


@pytest.mark.parametrize(
    ("handler", "says"),
    [
        ("handlers:BrokenSetup", "RuntimeError: model file missing"),
        ("handlers:does_not_exist", "has no attribute 'does_not_exist'"),
    ],
)
async def test_a_handler_that_cannot_set_up_raises_setup_failed(
    harness: Harness, handler: str, says: str
) -> None:
    with pytest.raises(SetupFailed, match=says) as failed:
        await harness.start(handler)
    assert "failed to load" in str(failed.value)


async def test_a_killed_replica_dies_with_the_reason_as_its_cause(harness: Harness) -> None:
    replica = await harness.start("handlers:echo")
    dead = asyncio.ensure_future(replica.wait_dead())
    for _ in range(3):
        await asyncio.sleep(0)
    assert not dead.done()  # wait_dead waits for the end
    replica.kill("exceeded its memory limit")
    async with asyncio.timeout(10):
        await dead
    assert replica.state is ReplicaState.DEAD
    assert replica.exit_cause == "exceeded its memory limit"
    assert not replica.retired
    with pytest.raises(ReplicaDied, match="exceeded its memory limit"):
        await replica.submit(call(), b"after death")


async def test_kill_fails_the_calls_in_flight_with_replica_died(harness: Harness) -> None:
    replica = await harness.start("handlers:async_sleep", max_inflight=4)
    calls = [replica.submit(call("seconds=30"), b"") for _ in range(3)]
    await wait_until(lambda: replica.oldest_call_age() > 0, what="calls in flight")
    replica.kill("was stuck in a call for over 1s")
    for pending in calls:
        with pytest.raises(ReplicaDied, match="was stuck in a call"):
            async with asyncio.timeout(10):
                await pending


async def test_drain_lets_calls_in_flight_finish_then_stops(harness: Harness) -> None:
    replica = await harness.start("handlers:async_sleep", max_inflight=4)
    calls = [replica.submit(call("seconds=0.3"), b"") for _ in range(2)]
    async with asyncio.timeout(20):
        await replica.drain_and_stop(grace=10)
    assert [(a.status, a.body) for a in await asyncio.gather(*calls)] == [(200, b"slept")] * 2
    assert replica.state is ReplicaState.DEAD
    assert replica.retired
    assert replica.exit_cause == "stopped by the controller"
    await replica.drain_and_stop(grace=10)  # once dead, a second stop is a no-op


async def test_a_drain_past_its_grace_kills_and_fails_what_is_left(harness: Harness) -> None:
    replica = await harness.start("handlers:async_sleep", max_inflight=4)
    pending = replica.submit(call("seconds=30"), b"")
    async with asyncio.timeout(20):
        await replica.drain_and_stop(grace=0.05)
    with pytest.raises(ReplicaDied):
        await pending
    assert replica.state is ReplicaState.DEAD
    assert replica.exit_cause == "did not stop within the drain period"
