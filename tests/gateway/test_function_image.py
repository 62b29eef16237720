"""`image` in /system/function/NAME is the image the function's replicas run: for a
function built from source under the stack's `registry:`, the registry's name of the tag
(built and pushed so; no `localhost/` name of it exists), not the local one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from nuvem.config import Settings
from nuvem.gateway.app import Gateway
from nuvem.platform import Platform
from nuvem.runtime.registry_access import RegistryAccess, replica_image
from nuvem.stack.function import FunctionSpec
from nuvem.stack.loader import load_stack_text
from support import ADMIN_PASSWORD, PlatformEnvironments, echo_runtime

pytestmark = pytest.mark.anyio

REGISTRY = "127.0.0.1:5999"  # never reached: nothing here is built or started


def functions(root: Path, registry: str | None) -> dict[str, FunctionSpec]:
    (root / "Containerfile").write_text("FROM localhost/base:1\n")
    text = f"registry: {registry}\n" if registry else ""
    text += "functions:\n"
    text += "  built: {build: {context: .}, scaling: {min: 0, mode: null}}\n"
    text += "  named: {image: localhost/user-image:1, scaling: {min: 0, mode: null}}\n"
    return dict(load_stack_text(text, "nuvem.yaml", root).functions)


def test_a_built_image_runs_by_the_registrys_name_and_a_named_one_as_written(
    tmp_path: Path,
) -> None:
    specs = functions(tmp_path, None)
    local = specs["built"].image_ref
    assert local is not None
    assert local.startswith("localhost/nuvem/built:")
    registry = RegistryAccess(REGISTRY, tls_verify=False)
    assert replica_image(specs["built"], registry) == f"{REGISTRY}/nuvem/built:{local[-12:]}"
    assert replica_image(specs["built"], None) == local
    assert replica_image(specs["named"], registry) == "localhost/user-image:1"
    handler = FunctionSpec.model_validate({"name": "h", "handler": "m:f", "root": "/"})
    assert replica_image(handler, registry) is None


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    settings = Settings(
        state_dir=tmp_path / "state", admin_password=ADMIN_PASSWORD, url="http://gw"
    )
    stack = load_stack_text(f"registry: {REGISTRY}\nfunctions: {{}}\n", "nuvem.yaml", tmp_path)
    platform = Platform.create(
        settings, stack=stack, runtime=echo_runtime(), environments=PlatformEnvironments()
    )
    await platform.start()
    try:
        yield platform
    finally:
        await platform.stop()


async def test_system_function_shows_the_name_the_replicas_run(
    platform: Platform, tmp_path: Path
) -> None:
    specs = functions(tmp_path, REGISTRY)
    for spec in specs.values():
        platform.controller.deploy(spec)
    local = specs["built"].image_ref
    assert local is not None
    transport = httpx.ASGITransport(app=Gateway(platform, manage_lifespan=False))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gw", auth=("admin", ADMIN_PASSWORD)
    ) as admin:
        built = (await admin.get("/system/function/built")).json()
        listed = {f["name"]: f["image"] for f in (await admin.get("/system/functions")).json()}
    expected = f"{REGISTRY}/nuvem/built:{local.rpartition(':')[2]}"
    assert built["image"] == expected
    assert listed == {"built": expected, "named": "localhost/user-image:1"}
    # The stack as deployed is unchanged: it names no registry per function.
    assert built["spec"]["image"] is None
