"""End-to-end: `nuvem package`, `nuvem --url … deploy` of the bundle to a gateway that shares
nothing with the project's folder, `nuvem ls` with the version, `nuvem rollback`."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import httpx
import pytest

from support import Nuvem, block_until

pytestmark = pytest.mark.e2e

STACK = """\
functions:
  greet:
    handler: functions:greet
    root: app
"""


def write_project(folder: Path, answer: str) -> Path:
    (folder / "app").mkdir(parents=True, exist_ok=True)
    (folder / "nuvem.yaml").write_text(STACK)
    (folder / "app" / "functions.py").write_text(f"def greet(req):\n    return {answer!r}\n")
    return folder / "nuvem.yaml"


def answer(nuvem: Nuvem) -> str:
    with nuvem.client() as client:
        try:
            response = client.post("/function/greet", auth=("admin", nuvem.admin_password()))
        except httpx.HTTPError:
            return ""
        return response.text if response.status_code == 200 else ""


def test_package_twice_gives_the_same_bytes(nuvem: Nuvem, tmp_path: Path) -> None:
    stack = write_project(tmp_path / "shop", "one")
    first = nuvem.run("package", "-f", str(stack), "-o", str(tmp_path / "a"), "--version", "1.0.0")
    second = nuvem.run("package", "-f", str(stack), "-o", str(tmp_path / "b"), "--version", "1.0.0")
    one, two = Path(first.stdout.strip()), Path(second.stdout.strip())
    assert one.name == two.name == "shop-1.0.0.zip"
    assert one.read_bytes() == two.read_bytes()
    digest = hashlib.sha256(one.read_bytes()).hexdigest()
    assert one.with_name("shop-1.0.0.zip.sha256").read_text() == f"{digest}  shop-1.0.0.zip\n"
    assert "1 function(s)" in first.stderr


def test_deploy_a_bundle_to_a_gateway_then_roll_back(nuvem: Nuvem, tmp_path: Path) -> None:
    nuvem.up()
    project = tmp_path / "elsewhere" / "shop"  # not the gateway's folder
    stack = write_project(project, "one")
    deployed = nuvem.run("--url", nuvem.url, "deploy", "-f", str(stack), "--version", "1.0.0")
    assert "uploaded" in deployed.stderr
    assert "greet: created" in deployed.stderr
    block_until(lambda: answer(nuvem) == "one", 60.0, what="greet answers one")

    again = nuvem.run("--url", nuvem.url, "deploy", "-f", str(stack), "--version", "1.0.0")
    assert "greet: unchanged" in again.stderr
    assert "uploaded" not in again.stderr  # the gateway had it: nothing sent

    write_project(project, "two")
    bundle = Path(nuvem.run("package", "-f", str(stack), "--version", "2.0.0").stdout.strip())
    assert bundle.parent == project / "dist"
    shutil.rmtree(project / "app")  # the gateway runs its own copy, not this folder
    nuvem.run("deploy", "--bundle", str(bundle))
    block_until(lambda: answer(nuvem) == "two", 60.0, what="greet answers two")

    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    listed = {f["name"]: f for f in json.loads(nuvem.run("ls", "--json").stdout)}
    assert listed["greet"]["version"] == "2.0.0"
    assert listed["greet"]["bundle"] == digest
    table = nuvem.run("ls", "--wide").stdout
    assert re.search(rf"^\s*greet\s+ready\s.*\s2\.0\.0\s+{digest[:12]}\s", table, re.M), table

    rolled = nuvem.run("rollback", "greet")
    assert "rolling back to 1.0.0" in rolled.stderr
    block_until(lambda: answer(nuvem) == "one", 60.0, what="greet answers one again")
    nuvem.run("rollback", "greet", "--to", "2.0.0")
    block_until(lambda: answer(nuvem) == "two", 60.0, what="greet answers two again")

    missing = nuvem.run("rollback", "greet", "--to", "0.9.0", check=False)
    assert missing.returncode != 0
    assert "no kept version '0.9.0' (kept: 1.0.0, 2.0.0)" in missing.stderr
