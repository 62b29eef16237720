"""The container runtime over the in-process engine (real HTTP on loopback, no podman):
pass-through of calls, readiness and its errors, exit causes, drain, the pruning of a
built function's earlier images."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from nuvem.errors import BadRequest, ReplicaDied
from nuvem.runtime.container_engine import ContainerExit
from nuvem.runtime.container_replica import ContainerReplica, container_cause
from nuvem.runtime.container_runtime import ContainerRuntime, registry_of
from nuvem.runtime.engine_choice import engine_setting
from nuvem.runtime.fake_engine import FakeEngine
from nuvem.runtime.logbook import LogBook
from nuvem.runtime.protocol import CallMeta
from nuvem.runtime.replica import STOPPED, SetupFailed
from nuvem.runtime.replica_state import ReplicaState
from nuvem.stack.function import FunctionSpec
from nuvem.stack.loader import load_stack_text
from support import PLATFORM_PYTHON, asgi_body, wait_until

pytestmark = pytest.mark.anyio


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that answers what it was sent, as JSON; /_/health answers 503 when the
    path says so, /gzip a body that must reach the caller as sent."""
    if scope["type"] != "http":
        return
    body = await asgi_body(receive)
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
    status = 200
    if scope["path"] == "/gzip":
        payload = b"\x1f\x8b not really gzip"
        headers = [(b"content-encoding", b"gzip")]
    else:
        payload = json.dumps(
            {
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"].decode(),
                "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
                "body": body.decode(),
            }
        ).encode()
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def failing_health(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 500, "headers": []})
    await send({"type": "http.response.body", "body": b"not yet"})


def spec(image: str = "localhost/echo:1", **fields: Any) -> FunctionSpec:
    return FunctionSpec.model_validate({"name": "echo", "image": image, **fields})


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine({"localhost/echo:1": echo, "localhost/sick:1": failing_health})


async def start(engine: FakeEngine, function: FunctionSpec, ready: float = 5) -> ContainerReplica:
    runtime = ContainerRuntime(engine, LogBook(), ready_timeout=ready)
    replica = await runtime.start(function, PLATFORM_PYTHON, "echo-1")
    assert isinstance(replica, ContainerReplica)
    return replica


async def test_a_call_passes_method_path_query_headers_and_body(engine: FakeEngine) -> None:
    replica = await start(engine, spec(env={"MODE": "fast"}, resources={"memory": "64Mi"}))
    meta = CallMeta("PUT", "/a/b", "x=1&y=2", [("x-call-id", "c-1"), ("x-custom", "yes")])
    result = await replica.submit(meta, b"payload")
    seen = json.loads(result.body)
    assert result.status == 200
    assert (seen["method"], seen["path"], seen["query"], seen["body"]) == (
        "PUT",
        "/a/b",
        "x=1&y=2",
        "payload",
    )
    assert seen["headers"]["x-call-id"] == "c-1"
    assert seen["headers"]["x-custom"] == "yes"
    assert "x-start-time" in seen["headers"]
    assert "user-agent" not in seen["headers"]  # only what the caller sent, and ours
    run = engine.containers[replica.run.name].run
    assert run.env["MODE"] == "fast"
    # of-watchdog's timeouts follow the function's (30 s by default), unless env: sets them.
    assert run.env["exec_timeout"] == run.env["write_timeout"] == "30s"
    assert run.memory == 64 * 2**20
    assert run.port == 8080
    await replica.drain_and_stop(1)


async def test_a_compressed_body_comes_back_as_sent(engine: FakeEngine) -> None:
    replica = await start(engine, spec())
    result = await replica.submit(CallMeta("GET", "/gzip", "", []), b"")
    assert result.body == b"\x1f\x8b not really gzip"
    assert ("content-encoding", "gzip") in result.headers
    await replica.drain_and_stop(1)


async def test_a_header_that_would_split_the_request_is_a_bad_request(
    engine: FakeEngine,
) -> None:
    replica = await start(engine, spec())
    with pytest.raises(BadRequest, match="x-evil"):
        await asyncio.wait_for(
            replica.submit(CallMeta("GET", "/", "", [("x-evil", "a\r\nx: y")]), b""), 1
        )
    assert replica.state is ReplicaState.READY  # the replica is fine: only the call was not
    assert (await replica.submit(CallMeta("GET", "/gzip", "", []), b"")).status == 200
    await replica.drain_and_stop(1)


async def test_a_missing_image_is_named_with_the_fix(engine: FakeEngine) -> None:
    with pytest.raises(SetupFailed) as failed:
        await start(engine, spec("localhost/nope:2"))
    assert "'echo'" in str(failed.value)
    assert "localhost/nope:2" in str(failed.value)
    assert "fake build -t localhost/nope:2" in failed.value.hint


async def test_an_image_from_a_registry_is_pulled_when_missing(engine: FakeEngine) -> None:
    engine.registry["registry.example:5000/echo:1"] = echo
    replica = await start(engine, spec("registry.example:5000/echo:1"))
    assert engine.pulls == ["registry.example:5000/echo:1"]
    assert (await replica.submit(CallMeta("GET", "/", "", []), b"")).status == 200
    await replica.drain_and_stop(1)
    with pytest.raises(SetupFailed) as failed:
        await start(engine, spec("registry.example:5000/gone:1"))
    assert "could not pull 'registry.example:5000/gone:1' from registry.example:5000" in str(
        failed.value
    )
    assert "does not hold registry.example:5000/gone:1" in failed.value.hint


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("localhost/echo:1", None),
        ("echo:1", None),
        ("localhost:5000/echo:1", "localhost:5000"),
        ("ghcr.io/team/echo@sha256:abc", "ghcr.io"),
    ],
)
def test_the_registry_is_read_as_docker_reads_it(image: str, registry: str | None) -> None:
    assert registry_of(image) == registry


def test_the_engine_setting_wins_over_the_stack_and_a_wrong_one_is_named() -> None:
    assert engine_setting("", None) == "auto"
    assert engine_setting("", "podman") == "podman"
    assert engine_setting("docker", "podman") == "docker"
    with pytest.raises(BadRequest) as failed:
        engine_setting("dockr", "auto")
    assert "NUVEM_CONTAINER_ENGINE='dockr'" in str(failed.value)


async def test_a_health_path_answering_500_fails_the_start_at_its_deadline(
    engine: FakeEngine,
) -> None:
    with pytest.raises(SetupFailed) as failed:
        await start(engine, spec("localhost/sick:1", health="/_/health"), ready=0.5)
    assert "health path /_/health: answered 500" in str(failed.value)
    assert engine.containers == {}  # removed, nothing left running


async def test_the_exit_code_becomes_the_cause_and_calls_fail(engine: FakeEngine) -> None:
    replica = await start(engine, spec())
    await engine.exit(replica.run.name, 3)
    await asyncio.wait_for(replica.wait_dead(), 5)
    assert replica.state is ReplicaState.DEAD
    assert replica.exit_cause == "container exited with code 3"
    with pytest.raises(ReplicaDied):
        await replica.submit(CallMeta("GET", "/", "", []), b"")


async def test_a_memory_kill_reads_as_oom(engine: FakeEngine) -> None:
    replica = await start(engine, spec(resources={"memory": "64Mi"}))
    await engine.exit(replica.run.name, 137, oom=True)
    await asyncio.wait_for(replica.wait_dead(), 5)
    assert replica.exit_cause is not None
    assert replica.exit_cause.startswith("container killed by its memory limit (64Mi) (OOM)")


def test_exit_causes_in_words() -> None:
    assert container_cause(None, None, 137) == "container exited with code 137 (killed by SIGKILL)"
    assert container_cause(ContainerExit(0), None, 1) == "container exited with code 0"
    assert "OOM" in container_cause(ContainerExit(137, oom_killed=True), None, 137)


async def test_drain_stops_it_as_the_controller_asked(engine: FakeEngine) -> None:
    replica = await start(engine, spec())
    await replica.drain_and_stop(1)
    assert replica.retired
    assert replica.exit_cause == STOPPED
    assert replica.run.name not in engine.containers


async def test_a_sweep_removes_what_an_earlier_gateway_of_its_state_folder_left(
    engine: FakeEngine,
) -> None:
    logbook = LogBook()
    killed = ContainerRuntime(engine, logbook, ready_timeout=5, owner="/srv/state")
    neighbour = ContainerRuntime(engine, logbook, ready_timeout=5, owner="/srv/other")
    left = await killed.start(spec(), PLATFORM_PYTHON, "echo-1")
    theirs = await neighbour.start(spec(), PLATFORM_PYTHON, "echo-1")
    assert isinstance(left, ContainerReplica)
    assert isinstance(theirs, ContainerReplica)
    successor = ContainerRuntime(engine, logbook, ready_timeout=5, owner="/srv/state")
    own = await successor.start(spec(), PLATFORM_PYTHON, "echo-2")
    assert isinstance(own, ContainerReplica)
    removed = await successor.sweep()
    assert [c.name for c in removed] == [left.run.name]
    assert removed[0].labels["nuvem.function"] == "echo"
    # Another state folder's containers, and the sweeping gateway's own, stay.
    assert set(engine.containers) == {theirs.run.name, own.run.name}
    assert await ContainerRuntime(engine, logbook).sweep() == []  # no owner: nothing swept
    await asyncio.wait_for(left.wait_dead(), 5)  # its replica saw its container go
    for replica in (theirs, own):
        await replica.drain_and_stop(1)


def sources(root: Path, count: int) -> list[FunctionSpec]:
    """`count` sources of one `build:` function on the echo image, each a changed context."""
    (root / "Containerfile").write_text("ARG FROM\nFROM ${FROM}\n")
    text = "functions:\n  echo: {build: {args: {FROM: localhost/echo:1}}}\n"
    specs = []
    for version in range(count):
        (root / "app.py").write_text(f"VERSION = {version}\n")
        specs.append(load_stack_text(text, "nuvem.yaml", root).functions["echo"])
    return specs


async def test_a_new_build_serving_prunes_the_old_ones_but_never_one_a_replica_runs(
    engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="nuvem.runtime.image_builder")
    logbook = LogBook()
    runtime = ContainerRuntime(engine, logbook, ready_timeout=5)
    specs = sources(tmp_path, 3)
    tags = [s.image_ref for s in specs]
    replicas = [await runtime.start(s, PLATFORM_PYTHON, f"echo-{i}") for i, s in enumerate(specs)]
    try:
        # The first version's replica still runs: its image stays, for now.
        await wait_until(lambda: f"{tags[0]} is in use" in caplog.text, 5, what="the refusal")
        assert set(tags) <= set(engine.images)
        # Once that replica is stopped and its container removed, the image goes; the one
        # before the serving one stays.
        await replicas[0].drain_and_stop(1)
        await wait_until(lambda: engine.removed_images == [tags[0]], 5, what=f"{tags[0]} gone")
        assert {"localhost/echo:1", tags[1], tags[2]} <= set(engine.images)
        lines = [line.text for line in logbook.tail("echo", 100)]
        assert f"removed earlier images {tags[0]} (their last container is gone)" in lines
        # Another replica of the serving version has nothing left to remove.
        replicas.append(await runtime.start(specs[2], PLATFORM_PYTHON, "echo-3"))
        for replica in replicas[1:]:
            assert (await replica.submit(CallMeta("GET", "/", "", []), b"")).status == 200
    finally:
        for replica in replicas:
            await replica.drain_and_stop(0)
        await runtime.close()
