"""Image functions with real podman: an image built here from a Containerfile that serves
HTTP (tests/delivery/echo_image), run as replicas behind a real gateway.

One image is built per module (on the cached Debian base, see tests/podman_images.py);
every test deploys it under its own function name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nuvem.runtime.container_replica import ContainerReplica
from nuvem.runtime.replica_state import ReplicaState
from podman_images import echo_image as build_echo
from podman_images import podman
from support import Running, callback_receiver, serving, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture(scope="module")
def echo_image() -> str:
    """The echo image, tag 1, built once for the module on the Debian base."""
    return build_echo("1")


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Running]:
    async with serving(tmp_path, tmp_path / "state") as running:
        yield running


def container_name(replica: object) -> str:
    assert isinstance(replica, ContainerReplica)
    return replica.run.name


def events(gateway: Running, function: str) -> list[str]:
    records = gateway.platform.records.list_events(function, limit=1000)
    return [event.message for event in records]


async def test_a_call_passes_path_query_headers_body_and_call_id(
    gateway: Running, echo_image: str
) -> None:
    await gateway.deploy(
        f"""
        functions:
          echo:
            image: {echo_image}
            port: 8080
            health: /_/health
            env: {{MODE: fast}}
            resources: {{cpu: 1, memory: 256Mi}}
        """,
        started=True,
    )
    response = await gateway.admin.post(
        "/function/echo/some/path?x=1&y=two",
        content=b"payload",
        headers={"X-Custom": "yes", "X-Call-Id": "call-42"},
    )
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["path"] == "/some/path"
    assert seen["query"] == {"x": "1", "y": "two"}
    assert seen["body"] == "payload"
    assert seen["headers"]["x-custom"] == "yes"
    assert seen["headers"]["x-call-id"] == "call-42"
    # What OpenFaaS's gateway sets on a call it forwards (gateway/openfaas_forward.py).
    assert seen["headers"]["x-start-time"] == response.headers["x-start-time"]
    gateway_host = gateway.url.removeprefix("http://")
    assert seen["headers"]["x-forwarded-host"] == gateway_host
    assert seen["headers"]["x-forwarded-for"].startswith("127.0.0.1:")
    assert seen["headers"]["host"] != gateway_host  # the container's own address
    assert "authorization" not in seen["headers"]
    assert seen["env"] == {"MODE": "fast", "NUVEM_FUNCTION": "echo"}
    assert response.headers["x-call-id"] == "call-42"
    # The function's listing names the image, as OpenFaaS's does.
    listed = (await gateway.admin.get("/system/function/echo")).json()
    assert listed["image"] == echo_image
    # What the container printed is in its logs.
    lines = [line.text for line in gateway.platform.logbook.tail("echo", 100)]
    assert "POST /some/path" in lines


async def test_async_jobs_run_on_a_container_and_call_back(
    gateway: Running, echo_image: str
) -> None:
    await gateway.deploy(f"functions: {{echo: {{image: {echo_image}}}}}", started=True)
    async with callback_receiver() as receiver:
        response = await gateway.admin.post(
            "/async-function/echo/raw",
            content=b"later",
            headers={"X-Callback-Url": receiver.url + "/done"},
        )
        assert response.status_code == 202
        await wait_until(lambda: len(receiver.received) == 1, within=30, what="callback")
    (callback,) = receiver.received
    assert callback.body == b"later"
    assert callback.headers["x-function-status"] == "200"


async def test_a_container_that_exits_is_replaced_and_the_event_names_its_code(
    gateway: Running, echo_image: str
) -> None:
    (deployment,) = await gateway.deploy(
        f"functions: {{crashy: {{image: {echo_image}}}}}", started=True
    )
    (first,) = deployment.ready()
    response = await gateway.admin.get("/function/crashy/exit?code=3")
    assert response.status_code == 502
    assert "container exited with code 3" in response.json()["error"]
    await wait_until(
        lambda: any(r.id != first.id for r in deployment.ready()), 60, what="a new replica"
    )
    assert any("container exited with code 3; replacing it" in m for m in events(gateway, "crashy"))
    again = await gateway.admin.post("/function/crashy/raw", content=b"back")
    assert again.content == b"back"


async def test_the_memory_limit_is_enforced_and_reported(gateway: Running, echo_image: str) -> None:
    (deployment,) = await gateway.deploy(
        f"functions: {{hungry: {{image: {echo_image}, resources: {{memory: 64Mi}}}}}}",
        started=True,
    )
    (replica,) = deployment.ready()
    name = container_name(replica)
    inspected = json.loads(podman("container", "inspect", name))[0]
    assert inspected["HostConfig"]["Memory"] == 64 * 2**20
    response = await gateway.admin.get("/function/hungry/alloc?mb=200")
    assert response.status_code == 502
    assert "memory limit (64Mi)" in response.json()["error"]
    await wait_until(lambda: replica.state is ReplicaState.DEAD, 30, what="the replica dead")
    assert replica.exit_cause is not None
    assert "OOM" in replica.exit_cause


async def test_scales_to_zero_and_a_call_brings_it_back(gateway: Running, echo_image: str) -> None:
    (deployment,) = await gateway.deploy(
        f"""
        functions:
          sleepy:
            image: {echo_image}
            scaling: {{min: 0, max: 2, zero_after_s: 1s, panic_window_s: 1s,
                       stable_window_s: 2s, scale_down_delay_s: 1s}}
        """,
    )
    first = await gateway.admin.post("/function/sleepy/raw", content=b"one")
    assert first.content == b"one"
    await wait_until(lambda: not deployment.replicas, 60, what="sleepy at zero replicas")
    assert podman("ps", "--filter", "label=nuvem.function=sleepy", "-q").strip() == ""
    again = await gateway.admin.post("/function/sleepy/raw", content=b"two")
    assert again.content == b"two"


# The runtime alone (readiness, its errors, exit causes, a missing image) is the engine
# contract, for podman and Docker both: test_container_engines.py.


# -- under load ------------------------------------------------------------------------------


async def load(gateway: Running, name: str, stop: asyncio.Event, codes: list[int]) -> None:
    """Call `name` again and again until `stop`, recording every status."""
    while not stop.is_set():
        response = await gateway.admin.post(f"/function/{name}/raw", content=b"x")
        codes.append(response.status_code)


@contextlib.asynccontextmanager
async def under_load(gateway: Running, name: str, callers: int) -> AsyncIterator[list[int]]:
    """`callers` tasks call `name` again and again, from 20 calls before the block until
    20 calls after it; yields every status so far."""
    stop, codes = asyncio.Event(), list[int]()
    tasks = [asyncio.create_task(load(gateway, name, stop, codes)) for _ in range(callers)]
    try:
        await wait_until(lambda: len(codes) > 20, 30, what=f"calls to {name}")
        yield codes
        seen = len(codes)
        await wait_until(lambda: len(codes) > seen + 20, 30, what=f"calls to {name} after")
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_a_rolling_update_from_tag_1_to_tag_2_fails_no_call(
    gateway: Running, echo_image: str
) -> None:
    tag_2 = build_echo("2", cache=False)
    stack = "functions: {{roll: {{image: {image}, scaling: {{min: 2, max: 2}}}}}}"
    (deployment,) = await gateway.deploy(stack.format(image=echo_image), started=True)
    async with under_load(gateway, "roll", 4) as codes:
        await gateway.deploy(stack.format(image=tag_2), within=90, started=True)
        await wait_until(
            lambda: (
                all(r.fingerprint == deployment.spec.fingerprint() for r in deployment.ready())
                and len(deployment.ready()) == 2
            ),
            90,
            what="both replicas on tag 2",
        )
    assert set(codes) == {200}, f"{len(codes)} calls: {sorted(set(codes))}"
    answer = (await gateway.admin.get("/function/roll/")).json()
    assert answer["version"] == "2"


async def test_a_container_killed_under_load_fails_no_idempotent_call(
    gateway: Running, echo_image: str
) -> None:
    (deployment,) = await gateway.deploy(
        f"functions: {{sturdy: {{image: {echo_image}, idempotent: true, "
        "scaling: {min: 2, max: 2}}}",
        started=True,
    )
    victim = deployment.ready()[0]
    async with under_load(gateway, "sturdy", 8) as codes:
        podman("kill", "--signal", "KILL", container_name(victim))
        await wait_until(
            lambda: victim.state is ReplicaState.DEAD and len(deployment.ready()) == 2,
            60,
            what="the killed replica replaced",
        )
    assert set(codes) == {200}, f"{len(codes)} calls: {sorted(set(codes))}"
    assert victim.exit_cause == "container exited with code 137 (killed by SIGKILL)"
