"""Built-in models exported to ONNX once, cached next to their weights by the weights' digest.

The digest itself is computed once per version of the weights file: hashing ResNet-18's
45 MB took ~0.1 s of every replica's start. It is remembered beside the export, under a
name made of the file's device, inode, size and modification time (ns): replacing the file
(a new inode) or rewriting it (a new mtime) makes a new name, so a stale digest is never
read; a digest that cannot be remembered (a read-only folder) is computed each time."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nuvem.models import architectures

INPUT = "input"
OUTPUT = "output"
_CHUNK = 1 << 20


def digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def known_digest(path: Path, folder: Path) -> str:
    """`digest(path)`, remembered in `folder` for as long as the file is unchanged."""
    seen = path.stat()
    key = f"{seen.st_dev}-{seen.st_ino}-{seen.st_size}-{seen.st_mtime_ns}"
    memo = folder / f".{path.name}.{key}.sha256"
    with contextlib.suppress(OSError):
        remembered = memo.read_text().strip()
        if len(remembered) == 64:
            return remembered
    value = digest(path)
    with contextlib.suppress(OSError):  # not remembered: the next start hashes again
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=memo.name, suffix=".part")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(value)
            os.replace(tmp_name, memo)  # whole or absent, for replicas starting together
        finally:
            Path(tmp_name).unlink(missing_ok=True)
    return value


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """One process at a time, across replicas starting together (the lock dies with them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_onnx(arch: str, weights: Path, cache: Path | None) -> Path:
    """The .onnx of `arch` with `weights`, exported on first use. It lives beside the weights
    when that folder is writable, else in `cache`; the name carries the weights' digest, so
    new weights never meet a stale export."""
    folder = weights.parent
    if not os.access(folder, os.W_OK) and cache is not None:
        folder = cache
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{arch}-{known_digest(weights, folder)[:16]}.onnx"
    target = folder / name
    with file_lock(folder / f".{name}.lock"):
        if target.is_file():
            return target  # no torch needed: the replica runs it with ONNX Runtime alone
        import torch  # only to export, once per weights

        from nuvem.models.weights import load_weights

        model = load_weights(architectures.build(arch), weights).eval()
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            with warnings.catch_warnings():
                # The TorchScript-based exporter is deprecated in favour of one that needs
                # onnxscript; it still exports these convolutional networks exactly.
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model,
                    (torch.zeros(1, 3, 224, 224),),
                    str(tmp),
                    input_names=[INPUT],
                    output_names=[OUTPUT],
                    dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                    dynamo=False,
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target
