"""/system/bundles over a real socket: uploads checked and stored, bundles deployed from the
gateway's own copy, the same bundle twice unchanged, rollback to a kept version."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import stat
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from nuvem.cluster import stack_bundle
from support import Running, wait_until

pytestmark = pytest.mark.anyio

STACK = """\
functions:
  greet:
    handler: functions:greet
    root: app
"""


def build(folder: Path, answer: str, version: str) -> bytes:
    """A bundle of a stack whose `greet` answers `answer`."""
    (folder / "app").mkdir(parents=True, exist_ok=True)
    (folder / "nuvem.yaml").write_text(STACK)
    (folder / "app" / "functions.py").write_text(f"def greet(req):\n    return b{answer!r}\n")
    return stack_bundle.build(folder / "nuvem.yaml", version).archive.data


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def upload(gateway: Running, data: bytes, digest: str | None = None) -> httpx.Response:
    return await gateway.admin.put(f"/system/bundles/{digest or sha(data)}", content=data)


async def deploy(gateway: Running, data: bytes) -> dict[str, object]:
    response = await upload(gateway, data)
    assert response.status_code == 200, response.text
    deployed = await gateway.admin.post(f"/system/bundles/{sha(data)}/deploy", json={})
    assert deployed.status_code == 202, deployed.text
    body: dict[str, object] = deployed.json()
    return body


async def answers(gateway: Running, expected: bytes) -> bool:
    response = await gateway.invoke("greet")
    return response.status_code == 200 and response.content == expected


async def test_a_bad_checksum_is_refused_with_both_digests(
    gateway: Running, tmp_path: Path
) -> None:
    data = build(tmp_path / "shop", "one", "1.0.0")
    wrong = sha(b"another file")
    response = await upload(gateway, data, wrong)
    assert response.status_code == 400
    error = response.json()["error"]
    assert f"client sent sha256 {wrong}" in error
    assert f"has sha256 {sha(data)}" in error
    not_hex = await upload(gateway, data, "abc")
    assert not_hex.status_code == 400
    assert "not a sha256" in not_hex.json()["error"]


@pytest.mark.parametrize(
    ("name", "mode"),
    [("../../outside.py", 0o100644), ("/tmp/abs.py", 0o100644), ("app/l", stat.S_IFLNK | 0o777)],
)
async def test_traversal_and_symlink_archives_are_refused(
    gateway: Running, name: str, mode: int
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        archive.writestr(info, b"/etc/passwd")
    response = await upload(gateway, buffer.getvalue())
    assert response.status_code == 400
    assert "unsafe entry" in response.json()["error"]
    assert name in response.json()["error"]


async def test_a_bundle_past_the_size_limit_is_refused_with_413(
    gateway: Running, tmp_path: Path
) -> None:
    data = build(tmp_path / "shop", "one", "1.0.0")
    gateway.platform.settings = dataclasses.replace(
        gateway.platform.settings, bundle_max_bytes=len(data) - 1
    )
    response = await upload(gateway, data)
    assert response.status_code == 413
    assert "NUVEM_BUNDLE_MAX_MB" in response.json()["error"]

    async def chunks() -> AsyncIterator[bytes]:
        yield data  # chunked: no length to refuse on, so the gateway counts as it reads

    chunked = await gateway.admin.put(f"/system/bundles/{sha(data)}", content=chunks())
    assert chunked.status_code == 413
    assert not (gateway.platform.settings.state_dir / "bundles" / sha(data)).exists()


async def test_uploads_need_the_admin(gateway: Running, tmp_path: Path) -> None:
    data = build(tmp_path / "shop", "one", "1.0.0")
    async with gateway.client() as anonymous:
        response = await anonymous.put(f"/system/bundles/{sha(data)}", content=data)
    assert response.status_code == 401
    assert not (gateway.platform.settings.state_dir / "bundles" / sha(data)).exists()


async def test_the_same_bundle_twice_is_unchanged(gateway: Running, tmp_path: Path) -> None:
    data = build(tmp_path / "shop", "one", "1.0.0")
    first = await deploy(gateway, data)
    assert first["functions"] == [{"name": "greet", "change": "created"}]
    await wait_until(lambda: answers(gateway, b"one"), 60.0, what="greet answers one")
    stored = gateway.platform.settings.state_dir / "bundles" / sha(data)
    assert stored.read_bytes() == data
    again = await upload(gateway, data)
    assert again.json()["stored"] == "present"
    second = await deploy(gateway, data)
    assert second["functions"] == [{"name": "greet", "change": "unchanged"}]


async def test_rollback_serves_the_old_version(gateway: Running, tmp_path: Path) -> None:
    one = build(tmp_path / "shop", "one", "1.0.0")
    two = build(tmp_path / "shop", "two", "2.0.0")
    await deploy(gateway, one)
    await wait_until(lambda: answers(gateway, b"one"), 60.0, what="greet answers one")
    assert (await deploy(gateway, two))["functions"] == [{"name": "greet", "change": "updated"}]
    await wait_until(lambda: answers(gateway, b"two"), 60.0, what="greet answers two")

    info = (await gateway.admin.get("/system/function/greet")).json()
    assert info["version"] == "2.0.0"
    assert info["bundle"] == sha(two)
    folder = gateway.platform.settings.state_dir / "bundles" / "code" / sha(two)
    assert info["spec"]["root"] == str(folder / "app")

    back = await gateway.admin.post("/system/function/greet/rollback", json={})
    assert back.status_code == 202, back.text
    assert back.json()["version"] == "1.0.0"
    await wait_until(lambda: answers(gateway, b"one"), 60.0, what="greet answers one again")
    listed = (await gateway.admin.get("/system/functions")).json()
    assert [(f["version"], f["bundle"]) for f in listed] == [("1.0.0", sha(one))]

    forward = await gateway.admin.post("/system/function/greet/rollback", json={"version": "2.0.0"})
    assert forward.status_code == 202, forward.text
    await wait_until(lambda: answers(gateway, b"two"), 60.0, what="greet answers two again")

    missing = await gateway.admin.post("/system/function/greet/rollback", json={"version": "9"})
    assert missing.status_code == 404
    assert "kept: 1.0.0, 2.0.0" in missing.json()["error"]


async def test_only_the_last_versions_are_kept(gateway: Running, tmp_path: Path) -> None:
    gateway.platform.settings = dataclasses.replace(gateway.platform.settings, bundle_keep=2)
    digests = []
    for n in range(3):
        data = build(tmp_path / "shop", f"v{n}", f"1.0.{n}")
        await deploy(gateway, data)
        digests.append(sha(data))
    bundles = gateway.platform.settings.state_dir / "bundles"
    assert not (bundles / digests[0]).exists()
    assert not (bundles / "code" / digests[0]).exists()
    assert (bundles / digests[1]).exists()
    await wait_until(lambda: answers(gateway, b"v2"), 60.0, what="greet answers v2")
    refused = await gateway.admin.post("/system/function/greet/rollback", json={"version": "1.0.0"})
    assert refused.status_code == 404


async def test_the_bundle_routes_are_in_the_openapi_document(gateway: Running) -> None:
    paths = (await gateway.admin.get("/openapi.json")).json()["paths"]
    upload = paths["/system/bundles/{digest}"]["put"]
    assert "application/zip" in upload["requestBody"]["content"]
    assert "post" in paths["/system/bundles/{digest}/deploy"]
    assert "post" in paths["/system/function/{name}/rollback"]


async def test_a_function_another_stack_deployed_is_taken_over_only_with_replace(
    gateway: Running, tmp_path: Path
) -> None:
    await gateway.deploy("functions: {greet: {handler: 'handlers:echo'}}")
    data = build(tmp_path / "shop", "one", "1.0.0")
    assert (await upload(gateway, data)).status_code == 200
    refused = await gateway.admin.post(f"/system/bundles/{sha(data)}/deploy", json={})
    assert refused.status_code == 409
    assert "greet (deployed from " in refused.json()["error"]
    assert "--replace" in refused.json()["error"]
    taken = await gateway.admin.post(f"/system/bundles/{sha(data)}/deploy", json={"replace": True})
    assert taken.status_code == 202, taken.text
    assert taken.json()["functions"] == [{"name": "greet", "change": "updated"}]
    await wait_until(lambda: answers(gateway, b"one"), 60.0, what="greet answers one")
