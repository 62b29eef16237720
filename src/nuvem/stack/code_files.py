"""A handler function's code: the files under its folder, and one digest of them.

The files are those a cluster node is sent (cluster/code_bundle.py): everything under the
function's `root` but caches, environments and version control (SKIP_DIRS), links out of
it, and any nuvem state folder inside it (one holding `nuvem.lock`: records, logs and the
admin password are no code, and change on every call). The digest is what makes a deploy
of changed code roll the function's replicas although its stack entry reads the same.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from nuvem.stack.build_context import SKIP_DIRS

STATE_MARKER = "nuvem.lock"  # the gateway's lock in its state folder (cli/state_lock.py)
# Files larger than this are digested by size and modification time, not read: a model's
# weights or a dataset beside the code would make every `nuvem deploy` read gigabytes, and
# every `nuvem up`: ResNet-18's 45 MB weights with their ONNX export beside a stack file
# took 0.3 s of its launch to hash (bench/launch.py). Code files are far smaller.
CONTENT_LIMIT = 2**20
FILE_LIMIT = 20_000
_STACK_FILE = re.compile(rb"^functions:", re.MULTILINE)


def files_under(root: Path, skip: frozenset[Path] = frozenset()) -> list[Path]:
    """The code files under `root`, sorted by name: no caches, environments, links out of
    it, state folders, nor anything under the folders in `skip` (e.g. where bundles are
    written)."""
    return sorted(walk(root, skip), key=lambda p: p.relative_to(root).as_posix())


def walk(root: Path, skip: frozenset[Path] = frozenset()) -> Iterator[Path]:
    """`files_under`, in a fixed order of its own (a folder's files before its folders)
    and as it goes, so a caller can stop early."""
    resolved_root = root.resolve()
    device = root.stat().st_dev
    for directory, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in SKIP_DIRS
            and Path(directory, d).resolve() not in skip
            and not Path(directory, d, STATE_MARKER).exists()
            # Another filesystem mounted inside (/proc under a `root: /`) is no one's code.
            and Path(directory, d).stat().st_dev == device
        )
        for name in sorted(names):
            path = Path(directory) / name
            if path.is_symlink() and not path.resolve().is_relative_to(resolved_root):
                continue  # a link out of the folder is not the function's code
            if path.is_file() and not name.endswith((".pyc", ".pyo")):
                yield path


def is_stack_file(path: Path, size: int) -> bool:
    """A stack file (YAML with `functions:` at its top level): configuration, not code."""
    if path.suffix not in (".yaml", ".yml") or size > 2**20:
        return False
    return _STACK_FILE.search(path.read_bytes()) is not None


def code_digest(root: Path) -> str | None:
    """sha256 of the code under `root` (paths, executable bits, contents), stack files left
    out (editing a function's scaling, or another stack's file in the same folder, changes
    no code); None for a folder of more than FILE_LIMIT files, which is no handler's folder
    (a stack file in a home folder with `root: .`), rather than reading it all at each load."""
    digest = hashlib.sha256()
    for count, path in enumerate(walk(root)):
        if count >= FILE_LIMIT:
            return None
        info = path.stat()
        if is_stack_file(path, info.st_size):
            continue
        executable = bool(info.st_mode & stat.S_IXUSR)
        digest.update(f"{path.relative_to(root).as_posix()}\0{int(executable)}\0".encode())
        if info.st_size > CONTENT_LIMIT:
            digest.update(f"size {info.st_size} mtime {info.st_mtime_ns}".encode())
        else:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
