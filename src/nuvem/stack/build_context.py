"""What an image build reads: the files of its context, and one digest of them.

The files are those podman sends to the build: everything under the context but what its
`.containerignore` (or `.dockerignore`) excludes, and never version control, caches or
virtual environments (SKIP_DIRS, as a bundle leaves them out too). The digest covers
their paths, contents and executable bits, the Containerfile and the build arguments:
the same source gives the same digest on any machine, whatever the files' times.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

SKIP_DIRS = frozenset({"__pycache__", ".git", ".hg", ".venv", "venv", ".mypy_cache", ".ruff_cache"})
IGNORE_FILES = (".containerignore", ".dockerignore")  # podman reads the first one found


def ignore_patterns(context: Path) -> list[str]:
    """The context's ignore patterns in order (`!pattern` re-includes), as podman reads them."""
    for name in IGNORE_FILES:
        path = context / name
        if path.is_file():
            lines = (line.strip() for line in path.read_text(errors="replace").splitlines())
            return [line.strip("/") for line in lines if line and not line.startswith("#")]
    return []


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether `relative` (a posix path) is excluded: the last pattern matching it or a
    folder above it decides; `!` patterns re-include."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: end + 1]) for end in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern[1:].strip("/") if negated else pattern
        if any(
            fnmatch.fnmatchcase(c, body) or fnmatch.fnmatchcase(c, f"**/{body}") for c in candidates
        ):
            excluded = not negated
    return excluded


def context_files(context: Path, skip: frozenset[Path] = frozenset()) -> list[Path]:
    """The files a build of `context` reads, sorted by their path inside it."""
    patterns = ignore_patterns(context)
    found = []
    for directory, dirs, names in os.walk(context, followlinks=False):
        dirs[:] = sorted(
            d for d in dirs if d not in SKIP_DIRS and Path(directory, d).resolve() not in skip
        )
        for name in names:
            path = Path(directory) / name
            relative = path.relative_to(context).as_posix()
            if path.is_symlink() and not path.resolve().is_relative_to(context.resolve()):
                continue  # a link out of the context is not part of it
            if path.is_file() and not ignored(relative, patterns):
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(context).as_posix())


def source_digest(context: Path, file: str, args: Mapping[str, str]) -> str:
    """sha256 of everything a build of `file` in `context` with `args` reads."""
    digest = hashlib.sha256()
    for path in context_files(context):
        executable = bool(path.stat().st_mode & stat.S_IXUSR)
        digest.update(f"{path.relative_to(context).as_posix()}\0{int(executable)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(b"\0file\0" + (context / file).read_bytes())
    digest.update(b"\0args\0" + json.dumps(dict(args), sort_keys=True).encode())
    return digest.hexdigest()
