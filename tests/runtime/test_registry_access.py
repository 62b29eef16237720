"""The stack's registry over the in-process engine: built images tagged with its address
and pushed once, its access handed to pulls of its images only, credentials from the
environment or an auth file and never in a repr, and pull and push errors' fixes. Real
podman against a real registry is in tests/delivery/test_container_registry.py."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from nuvem.config import Settings
from nuvem.errors import BadRequest, ImageBuildFailed
from nuvem.runtime.fake_engine import FakeEngine
from nuvem.runtime.image_builder import ImageBuilder
from nuvem.runtime.registry_access import RegistryAccess, registry_access, registry_hint
from nuvem.stack.function import FunctionSpec
from nuvem.stack.loader import load_stack_text
from nuvem.stack.registry import RegistrySpec

pytestmark = pytest.mark.anyio

ACCESS = RegistryAccess("127.0.0.1:5000", tls_verify=False, username="u", password="s3cret")


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A base image's app: these tests build and push images, they never run them."""


def built(root: Path) -> FunctionSpec:
    (root / "Containerfile").write_text("ARG FROM\nFROM ${FROM}\n")
    text = "functions:\n  echo: {build: {args: {FROM: localhost/base:1}}}\n"
    return load_stack_text(text, "nuvem.yaml", root).functions["echo"]


async def test_a_built_image_is_tagged_with_the_registry_and_pushed_once(tmp_path: Path) -> None:
    engine = FakeEngine({"localhost/base:1": echo})
    builder = ImageBuilder(engine, registry=ACCESS)
    spec = built(tmp_path)
    tag = await builder.ensure(spec)
    assert spec.image_ref is not None
    assert tag == "127.0.0.1:5000/" + spec.image_ref.removeprefix("localhost/")
    assert engine.pushes == [tag]
    assert tag in engine.registry
    assert await builder.ensure(spec) == tag
    assert engine.pushes == [tag]
    assert len(engine.builds) == 1


async def test_a_failed_push_names_image_registry_and_fix(tmp_path: Path) -> None:
    engine = FakeEngine({"localhost/base:1": echo})

    async def refused(image: str, access: RegistryAccess) -> None:
        raise OSError("dial tcp 127.0.0.1:5000: connect: connection refused")

    engine.push = refused  # type: ignore[method-assign]
    with pytest.raises(ImageBuildFailed) as failed:
        await ImageBuilder(engine, registry=ACCESS).ensure(built(tmp_path))
    assert "to the registry 127.0.0.1:5000 failed" in str(failed.value)
    assert "does not answer: start it, or fix registry.address" in failed.value.hint
    assert "s3cret" not in str(failed.value) + failed.value.hint


def test_access_owns_only_its_images_and_hides_the_password() -> None:
    assert ACCESS.owns("127.0.0.1:5000/nuvem/echo:1")
    assert not ACCESS.owns("127.0.0.1:50000/nuvem/echo:1")
    assert not ACCESS.owns("localhost/nuvem/echo:1")
    assert "s3cret" not in repr(ACCESS)
    auth = json.loads(ACCESS.auth_json())["auths"]["127.0.0.1:5000"]["auth"]
    assert base64.b64decode(auth).decode() == "u:s3cret"
    assert RegistryAccess("r.example").auth_json() == ""


def test_credentials_come_from_the_environment_before_the_auth_file(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    token = base64.b64encode(b"filer:pw").decode()
    path.write_text(json.dumps({"auths": {"r.example:5000": {"auth": token}}}))
    spec = RegistrySpec.model_validate({"address": "r.example:5000", "auth_file": str(path)})
    from_file = registry_access(spec, Settings.from_env({}))
    assert from_file == RegistryAccess("r.example:5000", True, "filer", "pw")
    env = {"NUVEM_REGISTRY_USERNAME": "envy", "NUVEM_REGISTRY_PASSWORD": "pw2"}
    assert registry_access(spec, Settings.from_env(env)) == RegistryAccess(
        "r.example:5000", True, "envy", "pw2"
    )
    assert registry_access(None, Settings.from_env(env)) is None


def test_an_auth_file_without_the_registry_is_a_bad_request(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {}}))
    spec = RegistrySpec(address="r.example:5000", auth_file=str(path))
    with pytest.raises(BadRequest) as bad:
        registry_access(spec, Settings.from_env({}))
    assert "holds no credentials for r.example:5000" in str(bad.value)
    assert "podman login --authfile" in bad.value.hint


def test_the_stack_names_its_registry_by_address_or_mapping(tmp_path: Path) -> None:
    stack = load_stack_text("registry: 127.0.0.1:5000\n", "nuvem.yaml", tmp_path)
    assert stack.registry == RegistrySpec(address="127.0.0.1:5000")
    text = "registry: {address: 127.0.0.1:5000, tls_verify: false}\n"
    stack = load_stack_text(text, "nuvem.yaml", tmp_path)
    assert stack.registry is not None
    assert not stack.registry.tls_verify
    with pytest.raises(ValidationError, match="is not host:port"):
        RegistrySpec(address="https://r.example")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("manifest unknown", "does not hold 127.0.0.1:5000/x:1"),
        ("connect: connection refused", "does not answer"),
        ("unauthorized: authentication required", "refused the credentials"),
        ("http: server gave HTTP response to HTTPS client", "tls_verify: false"),
        ("x509: certificate signed by unknown authority", "install its CA"),
        ("something else", "is reachable from this machine"),
    ],
)
def test_each_pull_error_has_its_fix(error: str, expected: str) -> None:
    assert expected in registry_hint(error, "127.0.0.1:5000/x:1", "127.0.0.1:5000")
