"""A stack's bundle: the same files make the same bytes, and the manifest says what is in."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from nuvem.cluster import stack_bundle
from nuvem.errors import SpecError

STACK = """\
functions:
  greet:
    handler: functions:greet
    root: app
    requirements: ["six==1.16.0"]
  shout:
    handler: loud.py:shout
    root: app
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "shop"
    (folder / "app" / "pkg").mkdir(parents=True)
    (folder / "nuvem.yaml").write_text(STACK)
    (folder / "app" / "functions.py").write_text("def greet(req):\n    return b'hi'\n")
    (folder / "app" / "loud.py").write_text("def shout(req):\n    return b'HI'\n")
    (folder / "app" / "pkg" / "data.txt").write_text("data\n")
    (folder / "app" / "requirements.txt").write_text("six==1.16.0\n")
    (folder / "app" / "__pycache__").mkdir()
    (folder / "app" / "__pycache__" / "functions.cpython-312.pyc").write_bytes(b"\x00")
    (folder / "notes.md").write_text("not code of any function\n")
    return folder


def test_the_same_stack_packs_to_the_same_bytes_twice(project: Path) -> None:
    first = stack_bundle.build(project / "nuvem.yaml", "1.0.0")
    second = stack_bundle.build(project / "nuvem.yaml", "1.0.0")
    assert first.archive.data == second.archive.data
    assert first.archive.digest == hashlib.sha256(first.archive.data).hexdigest()


def test_a_copy_with_other_mtimes_packs_to_the_same_bytes(project: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "shop"
    shutil.copytree(project, copy)  # copytree keeps mtimes: set others explicitly
    for path in copy.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    first = stack_bundle.build(project / "nuvem.yaml", "1.0.0")
    second = stack_bundle.build(copy / "nuvem.yaml", "1.0.0")
    assert first.archive.data == second.archive.data


def test_the_manifest_names_every_file_with_its_sha256(project: Path) -> None:
    bundle = stack_bundle.build(project / "nuvem.yaml", "2.1.0")
    with zipfile.ZipFile(io.BytesIO(bundle.archive.data)) as archive:
        names = sorted(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
        contents = {n: archive.read(n) for n in names if n != "manifest.json"}
    assert names == [
        "app/functions.py",
        "app/loud.py",
        "app/pkg/data.txt",
        "app/requirements.txt",
        "manifest.json",
        "nuvem.yaml",
    ]
    assert manifest["name"] == "shop"
    assert manifest["version"] == "2.1.0"
    assert manifest["functions"] == ["greet", "shout"]
    assert manifest["files"] == {n: hashlib.sha256(b).hexdigest() for n, b in contents.items()}
    assert manifest["digest"] == stack_bundle.files_digest(manifest["files"])
    assert bundle.file_name == "shop-2.1.0.zip"


def test_a_changed_file_changes_the_bundle(project: Path) -> None:
    before = stack_bundle.build(project / "nuvem.yaml", "1.0.0")
    (project / "app" / "loud.py").write_text("def shout(req):\n    return b'HEY'\n")
    after = stack_bundle.build(project / "nuvem.yaml", "1.0.0")
    assert before.archive.digest != after.archive.digest
    assert before.manifest.files["app/loud.py"] != after.manifest.files["app/loud.py"]
    assert before.manifest.files["app/functions.py"] == after.manifest.files["app/functions.py"]


def test_the_output_folder_is_never_packed(project: Path) -> None:
    (project / "app" / "dist").mkdir()
    (project / "app" / "dist" / "shop-0.1.0.zip").write_bytes(b"an older bundle")
    bundle = stack_bundle.build(
        project / "nuvem.yaml", "1.0.0", skip=frozenset({project / "app" / "dist"})
    )
    assert not any(name.startswith("app/dist") for name in bundle.manifest.files)


def test_a_function_folder_outside_the_stack_folder_is_refused(
    project: Path, tmp_path: Path
) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f.py").write_text("def f(req):\n    return b''\n")
    (project / "nuvem.yaml").write_text(
        "functions:\n  f:\n    handler: f:f\n    root: ../outside\n"
    )
    with pytest.raises(SpecError, match="outside the stack file's folder"):
        stack_bundle.build(project / "nuvem.yaml", "1.0.0")


def test_the_version_is_the_one_given_else_the_git_tag_else_the_digest(project: Path) -> None:
    assert stack_bundle.bundle_version("3.0.0", project, "ab" * 32) == "3.0.0"
    assert stack_bundle.bundle_version(None, project, "ab" * 32) == "0.0.0+abababababab"
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the tag fallback cannot be checked")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "feat: one"], ["tag", "v1.4.2"]):
        subprocess.run([*git, *args], cwd=project, check=True)
    assert stack_bundle.bundle_version(None, project, "ab" * 32) == "1.4.2"
    bundle = stack_bundle.build(project / "nuvem.yaml")
    assert bundle.manifest.version == "1.4.2"
    assert not any(name.startswith(".git") for name in bundle.manifest.files)
