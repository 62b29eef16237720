"""The engine contract, passed by podman's command line and by the Docker Engine API.

No Docker daemon runs here, but `podman system service` serves the Docker API: the
`docker` engine is tested for real against it (tests/podman_images.docker_api). Both
engines run the echo image (tests/delivery/echo_image) through the container runtime:
limits, logs, exit codes, the memory limit's kill, stop and remove, a missing image, the
image store's listing and a removal refused while a container uses the image.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from nuvem.errors import ReplicaDied, Unavailable
from nuvem.runtime.container_engine import ContainerEngine
from nuvem.runtime.container_replica import ContainerReplica
from nuvem.runtime.container_runtime import ContainerRuntime
from nuvem.runtime.docker import Docker
from nuvem.runtime.engine_choice import choose_engine, detect
from nuvem.runtime.logbook import LogBook
from nuvem.runtime.podman import Podman
from nuvem.runtime.protocol import CallMeta
from nuvem.runtime.replica import STOPPED, SetupFailed
from nuvem.runtime.replica_state import ReplicaState
from nuvem.stack.function import FunctionSpec
from podman_images import BASE, docker_api, echo_image, podman
from support import PLATFORM_PYTHON, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture(scope="module")
def echo() -> str:
    return echo_image()


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with docker_api(tmp_path_factory.mktemp("docker-api")) as host:
        yield host


@pytest.fixture(params=["podman", "docker"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[ContainerEngine]:
    made: ContainerEngine
    made = Docker(request.getfixturevalue("docker_host")) if request.param == "docker" else Podman()
    yield made
    await made.close()


def spec(image: str, **fields: object) -> FunctionSpec:
    return FunctionSpec.model_validate({"name": "probe", "image": image, **fields})


async def started(
    engine: ContainerEngine, image: str, replica_id: str, **fields: object
) -> tuple[ContainerRuntime, ContainerReplica, LogBook]:
    logbook = LogBook()
    runtime = ContainerRuntime(engine, logbook, ready_timeout=30)
    replica = await runtime.start(spec(image, **fields), PLATFORM_PYTHON, replica_id)
    assert isinstance(replica, ContainerReplica)
    return runtime, replica, logbook


META = CallMeta("POST", "/raw", "", [])


async def test_a_container_runs_with_its_port_limits_and_logs(
    engine: ContainerEngine, echo: str
) -> None:
    runtime, replica, logbook = await started(
        engine, echo, "limits-1", health="/_/health", resources={"cpu": 0.5, "memory": "96Mi"}
    )
    try:
        assert (await replica.submit(META, b"hello")).body == b"hello"
        inspected = json.loads(podman("container", "inspect", replica.run.name))[0]
        host = inspected["HostConfig"]
        assert host["Memory"] == 96 * 2**20
        assert host["MemorySwap"] == 96 * 2**20
        assert host["NanoCpus"] == 500_000_000 or host["CpuQuota"] == 50_000
        assert host["PortBindings"]["8080/tcp"] == [
            {"HostIp": "127.0.0.1", "HostPort": str(replica.run.host_port)}
        ]
        assert {"Name": "RLIMIT_NOFILE", "Soft": 1024, "Hard": 1024} in host["Ulimits"]
        assert inspected["Config"]["Labels"]["nuvem.replica"] == "limits-1"
        # Found by its labels, as a restarted gateway looks for what it must sweep.
        (found,) = await engine.labelled("nuvem.gateway", runtime.instance)
        assert (found.name, found.labels["nuvem.replica"]) == (replica.run.name, "limits-1")
        assert await engine.labelled("nuvem.gateway", "no-such-gateway") == []

        # The container's own lines reach its replica's log, and the engine keeps them too.
        def logged() -> bool:
            return "POST /raw" in [line.text for line in logbook.tail("probe", 100)]

        await wait_until(logged, 10, what="the container's log line")
        assert "GET /_/health" in await engine.logs(replica.run.name)
        exit = await engine.inspect(replica.run.name)
        assert exit is not None
        assert exit.code is None
        await replica.drain_and_stop(5)
        # Stopped and removed: the engine knows it no more, its port is closed.
        assert replica.exit_cause == STOPPED
        assert await engine.inspect(replica.run.name) is None
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{replica.run.host_port}/", timeout=1)
    finally:
        await replica.drain_and_stop(0)
        await runtime.close()


@pytest.mark.parametrize(
    ("path", "cause"),
    [
        ("/exit?code=3", "container exited with code 3"),
        ("/alloc?mb=200", "container killed by its memory limit (64Mi) (OOM)"),
    ],
)
async def test_the_exit_cause_names_the_code_or_the_memory_limit(
    engine: ContainerEngine, echo: str, path: str, cause: str
) -> None:
    runtime, replica, _ = await started(engine, echo, "exit-1", resources={"memory": "64Mi"})
    try:
        with pytest.raises(ReplicaDied) as died:
            await replica.submit(CallMeta("GET", path.split("?")[0], path.split("?")[1], []), b"")
        assert cause in str(died.value)
        await asyncio.wait_for(replica.wait_dead(), 30)
        assert replica.exit_cause is not None
        assert replica.exit_cause.startswith(cause)
        assert await engine.inspect(replica.run.name) is None  # removed once dead
    finally:
        await replica.drain_and_stop(0)
        await runtime.close()


async def test_a_killed_container_fails_its_calls_as_replica_died(
    engine: ContainerEngine, echo: str
) -> None:
    runtime, replica, _ = await started(engine, echo, "kill-1")
    try:
        await engine.kill(replica.run.name)
        await asyncio.wait_for(replica.wait_dead(), 30)
        assert replica.exit_cause == "container exited with code 137 (killed by SIGKILL)"
        assert replica.state is ReplicaState.DEAD
        with pytest.raises(ReplicaDied):
            await replica.submit(META, b"y")
    finally:
        await replica.drain_and_stop(0)
        await runtime.close()


async def test_a_missing_image_fails_the_start_naming_the_engines_fix(
    engine: ContainerEngine,
) -> None:
    runtime = ContainerRuntime(engine, LogBook(), ready_timeout=5)
    try:
        assert not await engine.exists("localhost/no-such-image:9")
        with pytest.raises(SetupFailed) as failed:
            await runtime.start(spec("localhost/no-such-image:9"), PLATFORM_PYTHON, "none-1")
    finally:
        await runtime.close()
    assert "'probe'" in str(failed.value)
    assert f"not in {engine.name}'s image store" in str(failed.value)
    assert f"{engine.name} build" in (failed.value.hint or "")


@pytest.mark.parametrize(
    ("fields", "expected", "within"),
    [
        # Long enough for the container to be up on a busy machine, so the probe sees 500.
        (
            {"env": {"HEALTH": "fail"}, "health": "/_/health"},
            "health path /_/health: answered 500",
            5,
        ),
        ({"port": 9999}, "port 9999: nothing accepted a connection", 2),
    ],
)
async def test_a_container_never_ready_is_a_failed_start_leaving_nothing(
    engine: ContainerEngine, echo: str, fields: dict[str, object], expected: str, within: float
) -> None:
    runtime = ContainerRuntime(engine, LogBook(), ready_timeout=within)
    try:
        with pytest.raises(SetupFailed) as failed:
            await runtime.start(spec(echo, **fields), PLATFORM_PYTHON, "sick-1")
    finally:
        await runtime.close()
    assert expected in str(failed.value), str(failed.value)
    assert echo in str(failed.value)
    assert podman("ps", "-a", "--filter", f"name=nuvem-sick-1-{runtime.instance}", "-q") == ""


async def test_the_store_lists_a_repository_and_keeps_an_image_a_container_uses(
    engine: ContainerEngine, echo: str, tmp_path: Path
) -> None:
    """What pruning a function's earlier builds needs of the engine: its repository's
    tags (no other's), and a removal that refuses while a container uses the image."""
    repository = f"localhost/nuvem-test-prune-{os.urandom(3).hex()}"
    # Images of their own, a label apart, as two builds of a function are: a tag of an
    # image that has other tags would only be untagged, in use or not. (The label is
    # written out, not an ARG: buildah's layer cache ignores an argument's new value.)
    refs = [f"{repository}:a", f"{repository}:b", f"{repository}-2:a"]
    try:
        for ref in refs:
            (tmp_path / "Containerfile").write_text(f"FROM {echo}\nLABEL nuvem.test.n={ref}\n")
            await engine.build(tmp_path, "Containerfile", ref, {})
        stored = await engine.stored_images(repository)
        assert sorted(image.ref for image in stored) == refs[:2]  # not the -2 one
        assert len({image.id for image in stored}) == 2
        assert all(abs(time.time() - image.created) < 3600 for image in stored)
        runtime, replica, _ = await started(engine, refs[0], "prune-1")
        try:
            assert not await engine.remove_image(refs[0])  # its container runs it
            assert await engine.remove_image(refs[1])
            assert await engine.remove_image(refs[1])  # gone already: no error
            assert [image.ref for image in await engine.stored_images(repository)] == refs[:1]
            assert (await replica.submit(META, b"still")).body == b"still"
            await replica.drain_and_stop(5)
            # Its container removed, the image goes; the other repository's stays.
            assert await engine.remove_image(refs[0])
            assert await engine.stored_images(repository) == []
            assert [i.ref for i in await engine.stored_images(f"{repository}-2")] == refs[2:]
        finally:
            await replica.drain_and_stop(0)
            await runtime.close()
    finally:
        for ref in refs:
            podman("rmi", "--force", ref, check=False)


async def test_a_build_argument_changed_alone_makes_a_new_image(
    engine: ContainerEngine, echo: str, tmp_path: Path
) -> None:
    """A build: function whose args alone changed gets a new tag (its source digest holds
    the args), and that tag must hold the new value, not a cached layer of the old one."""
    repository = f"localhost/nuvem-test-args-{os.urandom(3).hex()}"
    (tmp_path / "Containerfile").write_text(f"FROM {echo}\nARG N\nLABEL nuvem.test.n=$N\n")
    refs = [f"{repository}:one", f"{repository}:two"]
    try:
        for ref in refs:
            await engine.build(tmp_path, "Containerfile", ref, {"N": ref.rpartition(":")[2]})
        labels = [
            json.loads(podman("image", "inspect", ref))[0]["Labels"]["nuvem.test.n"] for ref in refs
        ]
        assert labels == ["one", "two"]
    finally:
        for ref in refs:
            podman("rmi", "--force", ref, check=False)


async def test_docker_builds_an_image_from_a_context(docker_host: str, echo: str) -> None:
    engine = Docker(docker_host)
    try:
        await engine.build(
            Path(__file__).parent / "echo_image",
            "Containerfile",
            "localhost/nuvem-test-echo:docker",
            {"BASE": BASE},
        )
        assert await engine.exists("localhost/nuvem-test-echo:docker")
    finally:
        await engine.close()


def test_the_engine_is_chosen_by_what_answers(docker_host: str, tmp_path: Path) -> None:
    assert detect("auto", docker_host) == "docker"
    assert detect("podman", docker_host) == "podman"
    nowhere = f"unix://{tmp_path}/no.sock"
    assert detect("auto", nowhere) == "podman"
    assert isinstance(choose_engine("auto", nowhere), Podman)
    with pytest.raises(Unavailable) as failed:
        choose_engine("docker", nowhere)
    assert nowhere in str(failed.value)
    assert "DOCKER_HOST" in failed.value.hint
