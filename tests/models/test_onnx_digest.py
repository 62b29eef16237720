"""The weights' digest that names their ONNX export is hashed once per version of the file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from nuvem.models.onnx_export import known_digest


def test_the_digest_is_remembered_until_the_file_changes(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"first weights")
    first = hashlib.sha256(b"first weights").hexdigest()
    assert known_digest(weights, tmp_path) == first
    (memo,) = tmp_path.glob(".model.safetensors.*.sha256")
    assert memo.read_text() == first
    memo.write_text("a" * 64)  # what is remembered is what is read: the file is not hashed
    assert known_digest(weights, tmp_path) == "a" * 64

    # Rewritten in place (same inode, same size): its mtime makes another memo.
    weights.write_bytes(b"other weights")
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert known_digest(weights, tmp_path) == hashlib.sha256(b"other weights").hexdigest()
    # Replaced by another file (a new inode), even with the old one's times.
    replacement = tmp_path / "new.safetensors"
    replacement.write_bytes(b"third weights")
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    os.replace(replacement, weights)
    assert known_digest(weights, tmp_path) == hashlib.sha256(b"third weights").hexdigest()


def test_a_folder_it_cannot_write_only_costs_the_hash(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights")
    missing = tmp_path / "gone"  # nothing can be written there
    assert known_digest(weights, missing) == hashlib.sha256(b"weights").hexdigest()
    assert list(tmp_path.glob(".*.sha256")) == []
