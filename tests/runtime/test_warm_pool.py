"""The warm pool with real processes: who gets a pre-started worker, and what it carries."""

from __future__ import annotations

from pathlib import Path

import pytest

from nuvem.runtime.local import LocalRuntime
from nuvem.stack.loader import load_stack_text
from support import Running, jpeg, local_runtime, wait_until, weights_file

pytestmark = pytest.mark.anyio


def pool_of(gateway: Running) -> LocalRuntime:
    return local_runtime(gateway.platform)


def environ_of(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


async def test_an_idle_worker_carries_no_function_variables(gateway: Running) -> None:
    runtime = pool_of(gateway)
    await gateway.deploy(
        "functions: {secretive: {handler: 'handlers:describe', env: {API_TOKEN: s3cr3t-v4lue}}}"
    )
    await wait_until(lambda: runtime.pool.idle_count() == 1, within=20, what="pool filled")
    (idle,) = [i for group in runtime.pool._idle.values() for i in group]
    environ = environ_of(idle.process.pid)
    assert b"s3cr3t-v4lue" not in environ
    assert b"NUVEM_FUNCTION" not in environ


async def test_start_time_variables_of_its_own_mean_a_spawned_worker(gateway: Running) -> None:
    runtime = pool_of(gateway)
    await gateway.deploy("functions: {plain: {handler: 'handlers:echo'}}")
    await wait_until(lambda: runtime.pool.idle_count() == 1, within=20, what="pool filled")
    hits = runtime.pool.hits
    await gateway.deploy(
        "functions: {seeded: {handler: 'handlers:describe', env: {PYTHONHASHSEED: '7'}}}"
    )
    assert runtime.pool.hits == hits  # the idle worker started with another hash seed
    answer = (await gateway.invoke("seeded")).json()
    assert answer["replica"] == gateway.platform.controller.get("seeded").ready()[0].id


async def test_closing_the_pool_ends_its_idle_workers(gateway: Running) -> None:
    runtime = pool_of(gateway)
    await gateway.deploy("functions: {plain: {handler: 'handlers:echo'}}")
    await wait_until(lambda: runtime.pool.idle_count() == 1, within=20, what="pool filled")
    (idle,) = [i for group in runtime.pool._idle.values() for i in group]
    await runtime.close()
    assert idle.process.returncode is not None
    assert runtime.pool.idle_count() == 0
    assert (await gateway.invoke("plain", b"still")).text == "still"


async def test_the_pool_fills_once_the_replica_it_started_is_ready(
    gateway: Running, tmp_path: Path
) -> None:
    runtime = pool_of(gateway)
    gate = tmp_path / "gate"
    stack = f"functions: {{gated: {{handler: 'handlers:Gated', env: {{GATE: '{gate}'}}}}}}"
    (spec,) = load_stack_text(stack, "nuvem.yaml", gateway.root).functions.values()
    deployment = gateway.platform.controller.deploy(spec)
    await wait_until(lambda: runtime.pool.misses == 1, within=20, what="the replica spawned")
    # While that replica starts, no idle worker is being made beside it.
    assert deployment.ready() == []
    assert runtime.pool.idle_count() == 0
    assert not [task for task in runtime.pool._filling.values() if not task.done()]
    gate.touch()
    await wait_until(lambda: len(deployment.ready()) == 1, within=20, what="replica ready")
    await wait_until(lambda: runtime.pool.idle_count() == 1, within=20, what="pool filled")
    assert (await gateway.invoke("gated")).text == "opened"


def maps_of(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.slow
async def test_model_replicas_get_workers_with_torch_already_imported(gateway: Running) -> None:
    pytest.importorskip("torch")

    runtime = pool_of(gateway)
    weights = weights_file("resnet18")
    await gateway.deploy(
        f"""
        functions:
          echo: {{handler: 'handlers:echo'}}
          resnet: {{model: {{arch: resnet18, weights: '{weights}'}}, scaling: {{max: 2}}}}
        """
    )
    await wait_until(lambda: runtime.pool.idle_count() == 2, within=120, what="pools filled")
    idle = {key[2]: group[0] for key, group in runtime.pool._idle.items()}
    torch_model = ("nuvem.models.torch_engine", "nuvem.models.weights", "nuvem.models.handler")
    assert set(idle) == {(), torch_model}
    model_worker = idle[torch_model].process.pid
    await wait_until(lambda: "libtorch" in maps_of(model_worker), within=60, what="torch loaded")
    assert "libtorch" not in maps_of(idle[()].process.pid)  # plain functions stay small

    hits = runtime.pool.hits
    await gateway.admin.post("/system/scale-function/resnet", json={"replicas": 2})
    deployment = gateway.platform.controller.get("resnet")
    await wait_until(lambda: len(deployment.ready()) == 2, within=120, what="second replica")
    assert runtime.pool.hits == hits + 1
    # The replica from the pool classifies like the spawned one: stop that one, then call.
    first = min(deployment.ready(), key=lambda r: r.started_at)
    await first.drain_and_stop(10)
    answer = await gateway.admin.post("/predictions/resnet", content=jpeg())
    assert answer.status_code == 200, answer.text
    assert len(answer.json()) == 5


@pytest.mark.slow
async def test_an_onnx_model_with_its_export_cached_starts_and_answers_without_torch(
    gateway: Running,
) -> None:
    pytest.importorskip("onnxruntime")
    from nuvem.models import onnx_export

    weights = weights_file("resnet18")
    onnx_export.cached_onnx("resnet18", weights, None)  # as a first start left it
    runtime = pool_of(gateway)
    stack = f"""
        functions:
          resnet: {{model: {{arch: resnet18, weights: '{weights}', engine: onnxruntime}}}}
        """
    await gateway.deploy(stack)
    await wait_until(lambda: runtime.pool.idle_count() == 1, within=120, what="pool filled")
    ((key, (idle,)),) = runtime.pool._idle.items()
    assert key[2] == ("onnxruntime", "nuvem.models.handler")  # no torch ahead for this one
    (replica,) = gateway.platform.controller.get("resnet").ready()
    answer = await gateway.admin.post("/predictions/resnet", content=jpeg())
    assert answer.status_code == 200, answer.text
    assert len(answer.json()) == 5
    assert "onnxruntime" in maps_of(replica.pid)
    assert "libtorch" not in maps_of(replica.pid)
    assert "libtorch" not in maps_of(idle.process.pid)
