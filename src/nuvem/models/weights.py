"""Model weights: reading, checking and loading state dicts (.pth, .pt, .safetensors), and
fetching weight files once into a local cache."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar
from urllib.parse import unquote, urlsplit

import httpx
import safetensors.torch
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from torch import nn

from nuvem.errors import ModelError
from nuvem.models import architectures
from nuvem.models.densenet import remap_legacy_keys

logger = logging.getLogger(__name__)

TORCH_SUFFIXES = (".pth", ".pt")
SAFETENSORS_SUFFIX = ".safetensors"
SUPPORTED_SUFFIXES = (*TORCH_SUFFIXES, SAFETENSORS_SUFFIX)

_M = TypeVar("_M", bound=nn.Module)

# How many key names an error message lists before it says "and N more".
_SHOWN = 5
# torch.hub's convention: `resnet18-f37072fd.pth` carries the first hex digits of its sha256.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[^-]+$")
_HEX = re.compile(r"[0-9a-f]{8,64}")
_CHUNK = 1 << 20


# --- reading and loading --------------------------------------------------------------------


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, on the CPU, keyed by name.

    A `.pth`/`.pt` file is read with `weights_only=True`, so it cannot run code; it may hold a
    bare state dict or one under "state_dict" (the usual training checkpoint). Keys saved from
    `nn.DataParallel` (all prefixed `module.`) are unwrapped.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(
            f"weights file not found: {path}",
            hint="check the path, or download the file with nuvem.models.weights.fetch()",
        )
    if not path.is_file():
        raise ModelError(f"weights path is not a file: {path}", hint="point it at the file itself")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        loaded: object = _read_safetensors(path)
    elif suffix in TORCH_SUFFIXES:
        loaded = _read_torch(path)
    else:
        raise ModelError(
            f"unsupported weights file type {path.suffix or '(none)'!r}: {path}",
            hint=f"use one of {', '.join(SUPPORTED_SUFFIXES)}",
        )
    return _unwrap(loaded, path)


def load_weights(model: _M, path: str | os.PathLike[str], *, assign: bool = False) -> _M:
    """Load a weights file into `model` and return it. Every key must match, by name and shape;
    otherwise nothing is loaded and the error names the differences and what the file looks
    like. torchvision's legacy DenseNet keys (`norm.1`) are accepted as torchvision does.

    With `assign`, the file's tensors become the model's parameters instead of being copied
    into them: the model's own (random) ones are freed, and a model built on the meta
    device is then complete."""
    state = remap_legacy_keys(read_state_dict(path))
    expected = model.state_dict()
    _check_fits(state, expected, path)
    # Checkpoints older than PyTorch 0.4.1 have no BatchNorm batch counters; torch itself starts
    # them at zero for such files, and eval-mode inference never reads them.
    for key, value in expected.items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value, device="cpu")
    model.load_state_dict(state, strict=True, assign=assign)
    return model


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write `model.state_dict()` as `.safetensors` or `.pth`/`.pt`, chosen by the suffix."""
    path = Path(path)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        safetensors.torch.save_file(state, str(path))
    elif suffix in TORCH_SUFFIXES:
        torch.save(state, path)
    else:
        raise ModelError(
            f"unsupported weights file type {path.suffix or '(none)'!r}: {path}",
            hint=f"use one of {', '.join(SUPPORTED_SUFFIXES)}",
        )
    return path


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except (safetensors.SafetensorError, OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read safetensors file {path}: {exc}",
            hint="the file is corrupt or incomplete; download it again",
        ) from exc


def _read_torch(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a page long; its last useful line names what was refused.
        detail = str(exc).split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
        raise ModelError(
            f"cannot read {path} as a weights-only torch file: {detail[0] if detail else exc}",
            hint="the file may hold pickled Python objects (a whole model, not a state dict) "
            "or be corrupt; save it with torch.save(model.state_dict(), path)",
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read torch file {path}: {exc}",
            hint="the file is corrupt or incomplete; download it again",
        ) from exc


def _unwrap(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise ModelError(
            f"{path} holds a {type(loaded).__name__}, not a state dict",
            hint="save it with torch.save(model.state_dict(), path)",
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ModelError(
                f"{path} is not a state dict: entry {key!r} is a {type(value).__name__}",
                hint="a state dict maps parameter names to tensors; "
                "save one with torch.save(model.state_dict(), path)",
            )
        state[key] = value
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


# --- telling what a checkpoint is -----------------------------------------------------------


def _comparable(keys: Iterable[str]) -> set[str]:
    # Batch counters come and go with the PyTorch version that saved the file.
    return {key for key in keys if not key.endswith(".num_batches_tracked")}


@functools.cache
def _layout(arch: str) -> Mapping[str, tuple[int, ...]]:
    # On the meta device no memory is allocated and no initialisation runs.
    with torch.device("meta"):
        model = architectures.build(arch)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def identify(state: Mapping[str, torch.Tensor]) -> str | None:
    """The built-in architecture whose state-dict keys these are (shapes aside), or None."""
    keys = _comparable(remap_legacy_keys(state))
    for arch in architectures.names():
        if keys == _comparable(_layout(arch)):
            return arch
    return None


def describe(state: Mapping[str, torch.Tensor]) -> str:
    """A short phrase saying what a checkpoint looks like, for error messages."""
    state = remap_legacy_keys(state)
    keys = _comparable(state)
    arch = identify(state)
    if arch is not None:
        layout = _layout(arch)
        differing = sorted(k for k in keys if tuple(state[k].shape) != layout[k])
        if not differing:
            return f"a {arch} checkpoint"
        classes = _head_classes(state, differing)
        if classes is not None:
            return f"a {arch} checkpoint for {classes} classes"
        return f"a {arch}-like checkpoint with different layer sizes"
    best, overlap = max(
        ((name, len(keys & _comparable(_layout(name)))) for name in architectures.names()),
        key=lambda item: item[1],
    )
    total = len(_comparable(_layout(best)))
    if overlap >= 0.8 * total:
        return f"closest to {best} ({overlap} of its {total} keys present)"
    return f"no built-in architecture (its keys begin {_first(sorted(keys))})"


def _head_classes(state: Mapping[str, torch.Tensor], differing: list[str]) -> int | None:
    # A checkpoint fine-tuned for other classes differs only in the final linear layer.
    modules = {key.rsplit(".", 1)[0] for key in differing}
    if len(modules) != 1:
        return None
    weight = state.get(f"{modules.pop()}.weight")
    return int(weight.shape[0]) if weight is not None and weight.dim() == 2 else None


def _check_fits(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
) -> None:
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    # Batch counters say little about a file, and safetensors files list them first.
    unexpected = sorted(
        (k for k in state if k not in expected), key=lambda k: k.endswith(".num_batches_tracked")
    )
    mismatched = [
        f"{k}: file {list(state[k].shape)}, model {list(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if not (missing or unexpected or mismatched):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches ({_first(mismatched, sep='; ')})")
    file_arch, model_arch = identify(state), identify(expected)
    hint = f"the file looks like {describe(state)}"
    if model_arch is not None:
        hint += f"; the model is {model_arch}"
    if file_arch is not None and file_arch == model_arch:
        differing = [k for k in expected if k in state and state[k].shape != expected[k].shape]
        classes = _head_classes(state, differing)
        if classes is not None:
            hint += f": build it with num_classes={classes}"
    raise ModelError(f"weights in {path} do not fit the model: {', '.join(problems)}", hint=hint)


def _first(items: list[str], sep: str = ", ") -> str:
    shown = sep.join(items[:_SHOWN])
    return f"{shown}{sep}and {len(items) - _SHOWN} more" if len(items) > _SHOWN else shown


# --- fetching -------------------------------------------------------------------------------


def fetch(
    url: str,
    cache_dir: str | os.PathLike[str],
    sha256: str | None = None,
    progress: bool = True,
    *,
    timeout: float = 60.0,
) -> Path:
    """The path of `url`'s file in `cache_dir`, downloading it only if it is not there yet.

    The file is checked against `sha256` (the full hex digest or a prefix of at least 8 digits)
    or, when that is None, against the digest prefix that torchvision puts in its file names
    (`resnet18-f37072fd.pth`). A download is written to a temporary file and renamed into
    place only once complete and verified, so concurrent or interrupted fetches never leave a
    partial file under the final name; a file that fails the check is deleted. A cached file is
    checked too, and fetched again if it fails.
    """
    name = _file_name(url)
    expected = _expected_digest(name, sha256)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / name
    if dest.is_file():
        if expected is None or _sha256_of(dest).startswith(expected):
            return dest
        logger.warning(
            "cached %s does not match its sha256 %s; downloading it again", dest, expected
        )
        dest.unlink(missing_ok=True)

    fd, tmp_name = tempfile.mkstemp(dir=cache, prefix=f".{name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _download(url, out, name, progress=progress, timeout=timeout, dest=dest)
            out.flush()
            os.fsync(out.fileno())
        if expected is not None and not digest.startswith(expected):
            raise ModelError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {digest}",
                hint="the download was corrupted or the file changed upstream; "
                "it was deleted, so trying again downloads it afresh",
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _file_name(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ModelError(f"cannot fetch {url!r}", hint="use an http:// or https:// URL")
    name = unquote(parts.path.rsplit("/", 1)[-1])
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ModelError(
            f"cannot tell a file name from the URL {url!r}",
            hint="the URL's path must end with the file's name",
        )
    return name


def _expected_digest(name: str, sha256: str | None) -> str | None:
    if sha256 is not None:
        digest = sha256.strip().lower()
        if not _HEX.fullmatch(digest):
            raise ModelError(
                f"invalid sha256 {sha256!r}",
                hint="give the hex digest, or at least its first 8 hex digits",
            )
        return digest
    match = _HASH_IN_NAME.search(name)
    return match.group(1) if match else None


def _sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _download(
    url: str, out: IO[bytes], name: str, *, progress: bool, timeout: float, dest: Path
) -> str:
    hasher = hashlib.sha256()
    fix = f"check the URL and the network, or download the file yourself and place it at {dest}"
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
            if response.status_code != httpx.codes.OK:
                raise ModelError(
                    f"downloading {url} failed: HTTP {response.status_code} "
                    f"{response.reason_phrase}",
                    hint=fix,
                )
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with _progress_bar(name, total, enabled=progress) as advance:
                for chunk in response.iter_bytes(_CHUNK):
                    out.write(chunk)
                    hasher.update(chunk)
                    advance(len(chunk))
    except httpx.HTTPError as exc:
        raise ModelError(f"downloading {url} failed: {exc}", hint=fix) from exc
    return hasher.hexdigest()


@contextmanager
def _progress_bar(
    name: str, total: int | None, *, enabled: bool
) -> Iterator[Callable[[int], None]]:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        # stdout may carry a command's output; progress is for the human watching.
        console=Console(stderr=True),
        transient=True,
        disable=not enabled,
    )
    with bar:
        task = bar.add_task(f"downloading {name}", total=total)
        yield lambda n: bar.update(task, advance=n)
