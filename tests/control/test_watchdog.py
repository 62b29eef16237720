"""The watchdog: a pure verdict per replica, and the kills it leads to (on fake replicas)."""

from __future__ import annotations

import asyncio

import pytest

from nuvem.control.deployment import Deployment
from nuvem.control.watchdog import Watchdog, kill_reason, stuck_after
from nuvem.errors import ReplicaDied
from nuvem.handler import Request
from nuvem.routing.router import Router
from nuvem.runtime.fake import FakeRuntime
from nuvem.runtime.protocol import CallMeta
from nuvem.runtime.replica_state import ReplicaState
from support import PLATFORM_PYTHON, spec

pytestmark = pytest.mark.anyio

MIB = 2**20


def test_memory_over_the_limit_is_fatal_under_it_or_unknown_is_not() -> None:
    limited = spec(resources={"memory": "100Mi"})
    assert kill_reason(limited, 101 * MIB, 0.0) == ("exceeded its memory limit (101 MiB > 100 MiB)")
    assert kill_reason(limited, 99 * MIB, 0.0) is None
    assert kill_reason(limited, None, 0.0) is None
    assert kill_reason(spec(), 10**12, 0.0) is None  # no limit declared


def test_a_call_is_stuck_after_twice_the_longest_deadline() -> None:
    assert stuck_after(spec(timeout="10s")) == 25.0
    assert stuck_after(spec(timeout="10s", jobs={"timeout": "1m"})) == 125.0
    assert kill_reason(spec(timeout="10s"), None, 25.0) is None
    assert kill_reason(spec(timeout="10s"), None, 25.1) == "was stuck in a call for over 25s"


async def test_kills_the_replica_over_its_limit_and_the_stuck_one() -> None:
    now = [0.0]
    release = asyncio.Event()

    async def hang(request: Request) -> bytes:
        await release.wait()
        return b""

    runtime = FakeRuntime(handler=hang, clock=lambda: now[0])
    function = spec(timeout="10s", resources={"memory": "100Mi"})
    deployment = Deployment(function, 3, Router("f", 4, 4))
    hog, stuck, fine = [await runtime.start(function, PLATFORM_PYTHON, f"f-{n}") for n in range(3)]
    for replica in (hog, stuck, fine):
        deployment.start_requested()
        deployment.started(replica)
    hog.rss, fine.rss = 200 * MIB, 50 * MIB
    call = stuck.submit(CallMeta("POST", "/", "", []), b"")
    await asyncio.sleep(0)
    now[0] = 30.0
    Watchdog().check(deployment)
    assert hog.state is ReplicaState.DEAD
    assert hog.exit_cause == "exceeded its memory limit (200 MiB > 100 MiB)"
    assert stuck.exit_cause == "was stuck in a call for over 25s"
    assert fine.state is ReplicaState.READY
    with pytest.raises(ReplicaDied, match="stuck in a call"):
        await call
