"""Where ONNX Runtime's optimised graph of a model is kept, so a replica builds its sessions
from it instead of optimising the model again.

Optimising ResNet-18's graph (ORT_ENABLE_ALL) took 0.09-0.19 s per session here, and a
replica whose threads follow its node's load builds two; a session from the saved graph
takes 0.03 s and runs as fast. The saved graph may hold hardware-specific kernels (ONNX
Runtime warns of NCHWc layouts), so its name carries, besides the model's digest, the ONNX
Runtime version and this CPU's model and flags: another machine or version optimises anew.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from nuvem.models.onnx_export import known_digest


@functools.cache
def cpu_key() -> str:
    """The CPU's model name and feature flags, hashed short (empty where unknown)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    wanted = sorted({line for line in lines if line.startswith(("model name", "flags"))})
    return hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:12]


def optimized_path(model: Path, runtime_version: str, cache: Path | None) -> Path | None:
    """Where the optimised graph of `model` lives (beside it when that folder is writable,
    else in `cache`); None when neither can hold it or the CPU is unknown."""
    folder = model.parent
    if not os.access(folder, os.W_OK):
        if cache is None:
            return None
        folder = cache
    key = cpu_key()
    if not key:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        digest = known_digest(model, folder)[:16]
    except OSError:
        return None
    return folder / f".{model.stem}-{digest}-ort{runtime_version}-{key}.optimized.onnx"
