"""A stack as one versioned, reproducible bundle: the stack file, every function's folder
(code, requirements files, local model files, an image's build context) and
`manifest.json`, in one archive.

Paths inside keep their place relative to the stack file's folder, so the gateway loads the
bundled stack file from the unpacked folder exactly as `nuvem deploy` loads it from disk.
The same files make the same bytes (code_bundle's reproducible archive), so the archive's
sha256 names the bundle wherever it is stored.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nuvem.cluster.code_bundle import MAX_BUNDLE, CodeBundle, Entry, pack_entries
from nuvem.errors import BadRequest, SpecError
from nuvem.stack.build_context import context_files
from nuvem.stack.code_files import files_under
from nuvem.stack.container_build import BUNDLE_VERSION_LABEL
from nuvem.stack.loader import load_stack
from nuvem.stack.stack import Stack

MANIFEST = "manifest.json"
FORMAT = 1
# What a function deployed from a bundle carries in its spec's labels.
NAME_LABEL = "nuvem.bundle.name"
VERSION_LABEL = BUNDLE_VERSION_LABEL
DIGEST_LABEL = "nuvem.bundle.digest"
_NAME = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    version: str
    stack_file: str  # its path inside the bundle
    functions: tuple[str, ...]
    files: dict[str, str]  # path inside the bundle -> sha256 hex
    digest: str  # sha256 of the file list (`files_digest`): what the bundle holds

    def to_json(self) -> bytes:
        data = {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "stack_file": self.stack_file,
            "functions": list(self.functions),
            "files": self.files,
            "digest": self.digest,
        }
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, text: bytes) -> Manifest:
        try:
            data: dict[str, Any] = json.loads(text)
            return cls(
                name=str(data["name"]),
                version=str(data["version"]),
                stack_file=str(data["stack_file"]),
                functions=tuple(str(f) for f in data["functions"]),
                files={str(k): str(v) for k, v in data["files"].items()},
                digest=str(data["digest"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadRequest(
                f"the bundle's {MANIFEST} is not a nuvem manifest ({exc})",
                "build the bundle with `nuvem package`",
            ) from None


@dataclass(frozen=True, slots=True)
class StackBundle:
    manifest: Manifest
    archive: CodeBundle  # archive.digest: sha256 of the whole bundle, its address

    @property
    def file_name(self) -> str:
        return f"{self.manifest.name}-{self.manifest.version}.zip"


def files_digest(files: dict[str, str]) -> str:
    """sha256 of the `sha256sum`-style listing of `files`, sorted by path."""
    listing = "".join(f"{files[p]}  {p}\n" for p in sorted(files))
    return hashlib.sha256(listing.encode()).hexdigest()


def bundle_version(explicit: str | None, folder: Path, digest: str) -> str:
    """The bundle's version: the one given, else the git tag at HEAD, else `0.0.0+<digest>`.

    The one place a version is decided; `nuvem version --next` (versions from the commits)
    plugs in here, between the tag and the fallback."""
    if explicit:
        return explicit
    tag = _git_tag(folder)
    if tag:
        return tag[1:] if re.fullmatch(r"v\d.*", tag) else tag
    return f"0.0.0+{digest[:12]}"


def _git_tag(folder: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "describe", "--tags", "--exact-match"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def bundle_name(folder: Path) -> str:
    """The stack folder's name as a function-like name: what tells two stacks apart."""
    return _NAME.sub("-", folder.name.lower()).strip("-") or "stack"


def collect(stack_file: Path, skip: frozenset[Path] = frozenset()) -> tuple[Stack, list[Entry]]:
    """The stack and the files a bundle of it holds (without the manifest)."""
    stack = load_stack(stack_file)
    base = stack_file.parent.resolve()
    found: dict[str, Path] = {stack_file.resolve().relative_to(base).as_posix(): stack_file}
    for spec in stack.functions.values():
        root = Path(spec.root)
        extra = [Path(p) for p in (spec.model.local_files().values() if spec.model else ())]
        if spec.build is not None:
            # What the gateway builds the image from: the context as podman reads it, and
            # its Containerfile even where the context's ignore file leaves it out.
            context = Path(spec.build.context)
            extra += [*context_files(context, skip), context / spec.build.file]
        for path in [*files_under(root, skip), *extra]:
            resolved = path.resolve()
            if not resolved.is_relative_to(base):
                raise SpecError(
                    f"function {spec.name!r}: {path} is outside the stack file's folder {base}",
                    hint="a bundle holds only the stack's folder: move the file into it",
                )
            found[resolved.relative_to(base).as_posix()] = resolved
    return stack, [Entry(name, path) for name, path in found.items() if name != MANIFEST]


def build(
    stack_file: Path,
    version: str | None = None,
    skip: frozenset[Path] = frozenset(),
    limit: int = MAX_BUNDLE,
) -> StackBundle:
    stack, entries = collect(stack_file, skip)
    base = stack_file.parent.resolve()
    files = {e.name: _sha256(e.source) for e in entries}
    digest = files_digest(files)
    manifest = Manifest(
        name=bundle_name(base),
        version=bundle_version(version, base, digest),
        stack_file=stack_file.resolve().relative_to(base).as_posix(),
        functions=tuple(sorted(stack.functions)),
        files=files,
        digest=digest,
    )
    entries.append(Entry(MANIFEST, manifest.to_json()))
    return StackBundle(manifest, pack_entries(entries, limit, f"stack {stack_file}"))


def _sha256(source: Path | bytes) -> str:
    return hashlib.sha256(source if isinstance(source, bytes) else source.read_bytes()).hexdigest()
