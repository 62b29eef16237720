"""Images through a real registry (docker-registry on loopback) with real podman: an image
built at deploy is tagged with the registry's address and pushed; a replica whose engine
lacks it pulls it and answers; an unknown image and a registry that does not answer are
errors naming the function, the image, the registry and the fix; credentials reach podman
in an auth file only its user reads, never on its command line. Built on the cached echo
image (tests/podman_images.py)."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from nuvem.runtime.container_engine import EngineError
from nuvem.runtime.container_replica import ContainerReplica
from nuvem.runtime.container_runtime import ContainerRuntime
from nuvem.runtime.image_builder import ImageBuilder
from nuvem.runtime.logbook import LogBook
from nuvem.runtime.podman import Podman
from nuvem.runtime.protocol import CallMeta
from nuvem.runtime.registry_access import RegistryAccess, registry_hint
from nuvem.runtime.replica import SetupFailed
from nuvem.stack.function import FunctionSpec
from nuvem.stack.loader import load_stack_text
from podman_images import echo_image, podman
from registry_server import registry_server
from support import PLATFORM_PYTHON, free_port

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

META = CallMeta("POST", "/raw", "", [])


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryAccess]:
    with registry_server() as address:
        yield RegistryAccess(address, tls_verify=False)


@pytest.fixture(scope="module")
def echo() -> str:
    return echo_image()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def exists(path: Path) -> bool:
    return path.exists()


def image_spec(image: str) -> FunctionSpec:
    return FunctionSpec.model_validate({"name": "pulled", "image": image})


async def test_a_built_image_is_pushed_and_a_replica_without_it_pulls_it(
    registry: RegistryAccess, echo: str, tmp_path: Path
) -> None:
    (tmp_path / "Containerfile").write_text("ARG FROM\nFROM ${FROM}\nLABEL nuvem.test=registry\n")
    text = f"functions:\n  built: {{build: {{args: {{FROM: {echo}}}}}}}\n"
    spec = load_stack_text(text, "nuvem.yaml", tmp_path).functions["built"]
    engine = Podman()
    tag = await ImageBuilder(engine, registry=registry).ensure(spec)
    try:
        assert tag.startswith(f"{registry.address}/nuvem/built:")
        # As on a node that never built it: only the registry holds it now.
        podman("rmi", "--force", tag)
        logbook = LogBook()
        runtime = ContainerRuntime(engine, logbook, ready_timeout=30, registry=registry)
        replica = await runtime.start(image_spec(tag), PLATFORM_PYTHON, "pulled-1")
        assert isinstance(replica, ContainerReplica)
        try:
            assert (await replica.submit(META, b"from the registry")).body == b"from the registry"
        finally:
            await replica.drain_and_stop(5)
        lines = [line.text for line in logbook.tail("pulled", 100)]
        assert f"pulling {tag} from {registry.address}" in lines
    finally:
        podman("rmi", "--force", tag, check=False)
        await engine.close()


async def test_an_image_the_registry_lacks_names_image_registry_and_fix(
    registry: RegistryAccess,
) -> None:
    image = f"{registry.address}/nuvem/absent:1"
    failed = await failed_start(registry, image, "absent-1")
    assert f"function 'pulled': podman could not pull {image!r} from {registry.address}" in str(
        failed
    )
    assert f"the registry {registry.address} does not hold {image}" in failed.hint


async def test_a_registry_that_does_not_answer_says_so() -> None:
    down = RegistryAccess(f"127.0.0.1:{free_port()}", tls_verify=False)
    image = f"{down.address}/nuvem/echo:1"
    failed = await failed_start(down, image, "down-1")
    assert image in str(failed)
    assert f"the registry {down.address} does not answer" in failed.hint


async def failed_start(registry: RegistryAccess, image: str, replica: str) -> SetupFailed:
    """The error a replica of `image`, pulled from `registry`, fails to start with."""
    engine = Podman()
    runtime = ContainerRuntime(engine, LogBook(), ready_timeout=30, registry=registry)
    try:
        with pytest.raises(SetupFailed) as failed:
            await runtime.start(image_spec(image), PLATFORM_PYTHON, replica)
    finally:
        await engine.close()
    return failed.value


async def test_credentials_reach_podman_in_a_private_file_not_its_arguments(
    registry: RegistryAccess,
) -> None:
    access = RegistryAccess(registry.address, False, "nuvem", "s3cret-pw")
    engine = Podman()
    try:
        args = engine._registry(access)
        assert "s3cret-pw" not in " ".join(args)
        assert mode(Path(args[args.index("--authfile") + 1])) == 0o600
        assert "s3cret-pw" not in repr(access)
        # The registry has no accounts: podman sends the file's credentials, is let in,
        # and the error it reports is the image's, with no password in it.
        with pytest.raises(EngineError) as failed:
            await engine.pull(f"{registry.address}/nuvem/absent:1", access)
        assert "manifest unknown" in str(failed.value).lower()
        assert "s3cret-pw" not in str(failed.value)
    finally:
        await engine.close()
    assert not exists(Path(args[args.index("--authfile") + 1]))


PASSWORD = "right-pw-0123"


@pytest.fixture(scope="module")
def locked() -> Iterator[str]:
    """A registry that lets in the account nuvem/PASSWORD only (htpasswd, bcrypt)."""
    with registry_server({"nuvem": PASSWORD}) as address:
        yield address


async def test_a_registry_that_checks_passwords_refuses_others_and_lets_the_account_in(
    locked: str, echo: str
) -> None:
    tag = f"{locked}/nuvem/locked:1"
    podman("tag", echo, tag)
    engine = Podman()
    try:
        strangers = [
            RegistryAccess(locked, False),  # no credentials
            RegistryAccess(locked, False, "nuvem", "wrong-pw"),
            RegistryAccess(locked, False, "intruder", PASSWORD),
        ]
        for access in strangers:
            with pytest.raises(EngineError) as refused:
                await engine.push(tag, access)
            assert "refused the credentials" in registry_hint(str(refused.value), tag, locked)
            assert "wrong-pw" not in str(refused.value)
        await engine.push(tag, RegistryAccess(locked, False, "nuvem", PASSWORD))
        podman("rmi", "--force", tag)  # as on a node that never had it
        for access in strangers[1:]:
            failed = await failed_start(access, tag, "locked-1")
            assert f"podman could not pull {tag!r} from {locked}" in str(failed)
            assert f"the registry {locked} refused the credentials" in failed.hint
        right = RegistryAccess(locked, False, "nuvem", PASSWORD)
        runtime = ContainerRuntime(engine, LogBook(), ready_timeout=30, registry=right)
        replica = await runtime.start(image_spec(tag), PLATFORM_PYTHON, "locked-2")
        assert isinstance(replica, ContainerReplica)
        try:
            assert (await replica.submit(META, b"let in")).body == b"let in"
        finally:
            await replica.drain_and_stop(5)
    finally:
        podman("rmi", "--force", tag, check=False)
        await engine.close()
