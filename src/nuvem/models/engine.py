"""Engines run a model on named numpy arrays: ONNX Runtime here, eager PyTorch or
TorchScript in torch_engine.py. This module imports no torch: a replica serving an ONNX
model never loads it (`import torch` is ~2.7 s of CPU here, most of a model's start)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from nuvem.errors import ModelError
from nuvem.models.onnx_optimized import optimized_path
from nuvem.stack.model import TensorSpec

# numpy's dtypes by Open Inference Protocol datatype (BF16 and BYTES have none).
NUMPY_TYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
DATATYPES = {np.dtype(t): name for name, t in NUMPY_TYPES.items()}
_ONNX_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(bfloat16)": "BF16",
    "tensor(string)": "BYTES",
}


class Engine(Protocol):
    platform: str  # as /v2/models/{name} reports it (Triton's names)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, feed: dict[str, np.ndarray], threads: int | None = None) -> dict[str, np.ndarray]:
        """The outputs for `feed`, on `threads` intra-op threads (None: as set up)."""
        ...


class OnnxEngine:
    """ONNX Runtime fixes a session's intra-op threads when it is made, so a replica whose
    threads follow its node's load keeps one session per thread count it may use (`also`):
    a call runs on the largest that does not exceed the threads it was given. The sessions
    are built from the model's optimised graph, saved by the first one to optimise it
    (onnx_optimized.py); `cache` holds it when the model's folder is read-only."""

    def __init__(
        self, path: Path, threads: int, also: Sequence[int] = (), cache: Path | None = None
    ) -> None:
        import onnxruntime as ort

        optimized = optimized_path(path, ort.__version__, cache)
        self.sessions = {
            count: _session(path, count, optimized) for count in sorted({threads, *also})
        }
        self.session = self.sessions[threads]
        self.platform = "onnxruntime_onnx"
        self.inputs = tuple(_onnx_spec(node) for node in self.session.get_inputs())
        self.outputs = tuple(_onnx_spec(node) for node in self.session.get_outputs())
        self._names = [spec.name for spec in self.outputs]

    def run(self, feed: dict[str, np.ndarray], threads: int | None = None) -> dict[str, np.ndarray]:
        session = self.session
        if threads is not None:
            fitting = [count for count in self.sessions if count <= threads]
            session = self.sessions[max(fitting) if fitting else min(self.sessions)]
        values = session.run(self._names, feed)
        return dict(zip(self._names, values, strict=True))


def _session(path: Path, threads: int, optimized: Path | None = None) -> Any:
    """A session on `threads` intra-op threads; from the optimised graph at `optimized` when
    it is there, else optimising `path` and saving the graph there for the next ones."""
    import onnxruntime as ort

    level = ort.GraphOptimizationLevel
    if optimized is not None and optimized.is_file():
        # Already optimised: ONNX Runtime would only walk the graph again finding nothing.
        with contextlib.suppress(Exception):  # unreadable: optimise the model itself below
            return _build(optimized, _options(threads, level.ORT_DISABLE_ALL))
    options = _options(threads, level.ORT_ENABLE_ALL)
    saving: Path | None = None
    if optimized is not None:
        # Written whole, then renamed: replicas starting together never read half of one.
        saving = optimized.with_name(f"{optimized.name}.{os.getpid()}.part")
        options.optimized_model_filepath = str(saving)
        options.log_severity_level = 3  # not its warning that the graph fits this CPU only
    try:
        session = _build(path, options)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(
            f"cannot load ONNX model {path}: {exc}", "check that it is a valid .onnx file"
        ) from exc
    finally:
        if saving is not None and saving.is_file():
            assert optimized is not None
            with contextlib.suppress(OSError):
                os.replace(saving, optimized)
            saving.unlink(missing_ok=True)
    return session


def _options(threads: int, level: Any) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = level
    # Idle pool threads sleep instead of spinning: spinning steals the cores of the node's
    # other replicas (for OpenMP, OMP_WAIT_POLICY=PASSIVE in runtime/worker_command.py).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _build(path: Path, options: Any) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _onnx_spec(node: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in node.shape)
    return TensorSpec(name=node.name, datatype=_ONNX_TYPES.get(node.type, "BYTES"), shape=shape)
