"""A function's folder as one archive named by its content hash, so nodes that do not share
the gateway's filesystem get the code once per version and can check what they got.

The archive is reproducible (sorted names, fixed times and modes), so the same folder always
has the same digest, and unpacking refuses anything that could land outside its folder.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nuvem.errors import BadRequest, PayloadTooLarge
from nuvem.stack.code_files import files_under

# What is never code: caches, environments, version control.
MAX_BUNDLE = 256 * 2**20
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class CodeBundle:
    digest: str  # sha256 hex of `data`
    data: bytes
    files: int


def pack(folder: Path, limit: int = MAX_BUNDLE) -> CodeBundle:
    """Every regular file under `folder` (symlinks followed only inside it), reproducibly."""
    root = folder.resolve()
    if not root.is_dir():
        raise BadRequest(
            f"function folder {folder} does not exist", "set `root` to the handler's folder"
        )
    entries = [Entry(p.relative_to(root).as_posix(), p) for p in files_under(root)]
    return pack_entries(entries, limit, f"function folder {folder}")


@dataclass(frozen=True, slots=True)
class Entry:
    """One file of an archive: its name there, and the file or the bytes it holds."""

    name: str
    source: Path | bytes


def pack_entries(entries: list[Entry], limit: int = MAX_BUNDLE, what: str = "bundle") -> CodeBundle:
    """`entries` as one reproducible archive: sorted names, fixed times and modes, so the
    same files always make the same bytes whatever their mtimes or the order given."""
    buffer = io.BytesIO()
    size = files = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for entry in sorted(entries, key=lambda e: e.name):
            data = entry.source if isinstance(entry.source, bytes) else entry.source.read_bytes()
            size += len(data)
            if size > limit:
                raise PayloadTooLarge(
                    f"{what} holds more than {limit // 2**20} MiB of files",
                    "keep weights and data out of the handler folder (models fetch their own)",
                )
            info = zipfile.ZipInfo(entry.name, date_time=_EPOCH)
            executable = (
                isinstance(entry.source, Path) and entry.source.stat().st_mode & stat.S_IXUSR
            )
            info.external_attr = (0o755 if executable else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
            files += 1
    data = buffer.getvalue()
    return CodeBundle(hashlib.sha256(data).hexdigest(), data, files)


def unpack(data: bytes, digest: str, cache: Path) -> Path:
    """The bundle's folder under `cache` (`cache/<digest>`), unpacked once; BadRequest when
    the data does not match its digest or holds a path that escapes the folder."""
    target = cache / digest
    if target.is_dir():
        return target
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise BadRequest(
            f"code bundle {digest[:12]} arrived corrupted (its sha256 is {actual[:12]})",
            "deploy the function again",
        )
    cache.mkdir(parents=True, exist_ok=True)
    staging = cache / f".{digest}.{os.getpid()}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _extract(data, digest, staging)
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # another replica of this version unpacked it first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _extract(data: bytes, digest: str, staging: Path) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        with archive:
            infos = archive.infolist()
            # Each entry inflates to at most its declared size, so the sum bounds memory and disk.
            if sum(info.file_size for info in infos) > MAX_BUNDLE:
                raise BadRequest(
                    f"code bundle {digest[:12]} inflates to more than {MAX_BUNDLE // 2**20} MiB",
                    "leave data files out of the bundle; mount or download them instead",
                )
            for info in infos:
                name = PurePosixPath(info.filename)
                mode = info.external_attr >> 16
                # Only plain files and folders: a link, device or pipe could reach outside.
                kind = stat.S_IFMT(mode)
                odd = kind not in (0, stat.S_IFREG, stat.S_IFDIR)
                if name.is_absolute() or ".." in name.parts or "\\" in info.filename or odd:
                    raise BadRequest(
                        f"code bundle {digest[:12]} holds an unsafe entry {info.filename!r}",
                        "bundles hold only files inside the function's folder",
                    )
                if info.is_dir():
                    continue
                path = staging.joinpath(*name.parts)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(archive.read(info))
                path.chmod(0o755 if mode & stat.S_IXUSR else 0o644)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, IndexError) as exc:
        raise BadRequest(
            f"code bundle {digest[:12]} is not a readable zip archive: {exc}",
            "deploy the function again",
        ) from None
    except (NotImplementedError, RuntimeError) as exc:  # other compressions, encryption
        raise BadRequest(
            f"code bundle {digest[:12]} uses a zip feature nuvem does not read: {exc}",
            "pack it with nuvem deploy, which writes plain deflate entries",
        ) from None
