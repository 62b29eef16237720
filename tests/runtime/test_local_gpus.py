"""The local runtime gives GPUs out by index: fractions share a device, a replica that finds
no room fails to start with the reason, and a replica's devices come back when it ends."""

from __future__ import annotations

import asyncio
import json

import pytest

from nuvem.runtime.local import LocalRuntime
from nuvem.runtime.logbook import LogBook
from nuvem.runtime.protocol import CallMeta
from nuvem.runtime.replica import Replica, SetupFailed
from nuvem.stack.function import FunctionSpec, Resources
from support import HANDLERS, PLATFORM_PYTHON, wait_until

pytestmark = pytest.mark.anyio


def _spec(gpu: float) -> FunctionSpec:
    return FunctionSpec(
        name="gpu", handler="handlers:environment", root=str(HANDLERS), resources=Resources(gpu=gpu)
    )


async def _devices(replica: Replica) -> str:
    answer = await replica.submit(CallMeta("GET", "/", "", []), b"")
    devices: str = json.loads(answer.body)["CUDA_VISIBLE_DEVICES"]
    return devices


async def test_gpus_are_given_out_by_index_and_come_back() -> None:
    runtime = LocalRuntime(LogBook(), setup_timeout=60, warm_workers=0, gpus=2)
    started: list[Replica] = []
    try:
        for n in range(3):
            started.append(await runtime.start(_spec(0.5), PLATFORM_PYTHON, f"half-{n}"))
        assert [await _devices(r) for r in started] == ["0", "0", "1"]
        with pytest.raises(SetupFailed, match=r"no GPU room .*GPU 0: 0, GPU 1: 0\.5"):
            await runtime.start(_spec(1), PLATFORM_PYTHON, "whole")
        for replica in started[:2]:  # GPU 0's two halves end: GPU 0 is whole again
            replica.kill("make room")
            await replica.wait_dead()
        await wait_until(lambda: runtime.gpus.free() == [1.0, 0.5], what="GPU 0 released")
        whole = await runtime.start(_spec(1), PLATFORM_PYTHON, "whole")
        started.append(whole)
        assert await _devices(whole) == "0"
        cpu_only = await runtime.start(_spec(0), PLATFORM_PYTHON, "cpu")
        started.append(cpu_only)
        assert await _devices(cpu_only) == ""
    finally:
        for replica in started:
            replica.kill("the test is over")
        await asyncio.gather(*(replica.wait_dead() for replica in started))
        await runtime.close()
