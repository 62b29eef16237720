"""Code bundles: one digest per content, and nothing unpacks outside its folder."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nuvem.cluster import code_bundle
from nuvem.errors import BadRequest, PayloadTooLarge


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_same_content_same_digest_whatever_the_times(tmp_path: Path) -> None:
    files = {"app.py": b"def handle(r): return b'x'\n", "pkg/util.py": b"X = 1\n"}
    first = code_bundle.pack(_folder(tmp_path / "a", files))
    second = _folder(tmp_path / "b", files)
    os.utime(second / "app.py", (1, 1))
    assert code_bundle.pack(second).digest == first.digest
    assert first.digest == hashlib.sha256(first.data).hexdigest()
    assert first.files == 2
    (second / "app.py").write_bytes(b"changed")
    assert code_bundle.pack(second).digest != first.digest


def test_caches_and_environments_are_not_code(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "f",
        {
            "app.py": b"",
            "__pycache__/app.cpython-311.pyc": b"\0",
            ".venv/bin/python": b"",
            ".git/HEAD": b"ref",
            "stale.pyc": b"\0",
        },
    )
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    (folder / "link.txt").symlink_to(outside)
    bundle = code_bundle.pack(folder)
    names = zipfile.ZipFile(io.BytesIO(bundle.data)).namelist()
    assert names == ["app.py"]


def test_unpack_round_trips_and_keeps_the_executable_bit(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "f", {"run.sh": b"#!/bin/sh\n", "deep/er/x.py": b"x"})
    (folder / "run.sh").chmod(0o755)
    bundle = code_bundle.pack(folder)
    target = code_bundle.unpack(bundle.data, bundle.digest, tmp_path / "cache")
    assert target == tmp_path / "cache" / bundle.digest
    assert (target / "deep" / "er" / "x.py").read_bytes() == b"x"
    assert (target / "run.sh").stat().st_mode & stat.S_IXUSR
    # Unpacked once: a second call finds the folder and leaves it be.
    assert code_bundle.unpack(b"ignored", bundle.digest, tmp_path / "cache") == target


def test_a_corrupted_bundle_is_refused(tmp_path: Path) -> None:
    bundle = code_bundle.pack(_folder(tmp_path / "f", {"a.py": b"a"}))
    with pytest.raises(BadRequest, match="arrived corrupted"):
        code_bundle.unpack(bundle.data + b"\0", bundle.digest, tmp_path / "cache")
    assert not (tmp_path / "cache" / bundle.digest).exists()


@pytest.mark.parametrize("name", ["../escape.py", "/etc/evil", "a/../../b"])
def test_entries_that_escape_the_folder_are_refused(tmp_path: Path, name: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("fine.py", b"")
        archive.writestr(name, b"boom")
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(BadRequest, match="unsafe entry"):
        code_bundle.unpack(data, digest, tmp_path / "cache")
    assert not (tmp_path / "escape.py").exists()
    assert list((tmp_path / "cache").iterdir()) == []  # no half-unpacked folder is left


def test_symlink_entries_are_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    data = buffer.getvalue()
    with pytest.raises(BadRequest, match="unsafe entry"):
        code_bundle.unpack(data, hashlib.sha256(data).hexdigest(), tmp_path / "cache")


def test_a_folder_too_large_is_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "f", {"weights.bin": b"\0" * 2048})
    with pytest.raises(PayloadTooLarge, match="keep weights and data out"):
        code_bundle.pack(folder, limit=1024)


def test_a_missing_folder_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="set `root`"):
        code_bundle.pack(tmp_path / "nope")


@settings(max_examples=30, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8}){0,2}\.py", fullmatch=True),
        st.binary(max_size=200),
        min_size=1,
        max_size=6,
    )
)
def test_pack_then_unpack_gives_the_same_files(files: dict[str, bytes]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        # A name cannot be both a file and a folder; keep the first of such clashes.
        kept: dict[str, bytes] = {}
        for name, data in files.items():
            parts = name.split("/")
            prefixes = {"/".join(parts[:i]) for i in range(1, len(parts))}
            if prefixes & set(kept) or any(k.startswith(name + "/") for k in kept):
                continue
            kept[name] = data
        bundle = code_bundle.pack(_folder(root / "src", kept))
        target = code_bundle.unpack(bundle.data, bundle.digest, root / "cache")
        got = {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*.py")}
        assert got == kept
