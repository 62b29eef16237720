"""What a replica serving a model is told at start: its model, cache and thread settings."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from nuvem.stack.function import FunctionSpec
from nuvem.stack.model import intra_op_threads, threads_follow_load

# Read by nuvem.models.handler inside the replica.
MODEL_ENV = "NUVEM_MODEL"
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def model_environ(spec: FunctionSpec, cache: Path | None) -> dict[str, str]:
    """Environment variables for a model replica (none for a plain function)."""
    if spec.model is None:
        return {}
    cpu_given = "cpu" in spec.resources.model_fields_set
    threads = intra_op_threads(spec.model, spec.resources.cpu, cpu_given, spec.scaling.min)
    config = {
        "function": spec.name,
        "model": spec.model.model_dump(mode="json"),
        "engine": spec.model.resolved_engine(),
        "cache": str(cache) if cache is not None else None,
        "threads": threads,
        # The cores that the node's replicas share out call by call (models/core_share.py),
        # when their threads follow the load; computed where the replica runs.
        "cores": node_cores() if threads_follow_load(spec.model, cpu_given) else None,
    }
    environ = dict.fromkeys(_THREAD_VARIABLES, str(threads))
    environ[MODEL_ENV] = json.dumps(config)
    return environ


# What an idle worker imports ahead for a model, by engine: the engine's own modules. An
# ONNX model's replica runs without torch (it imports it only to export a built-in model on
# first use), so its idle worker stays without; a torch one loads torch and the weights'
# readers.
_ENGINE_MODULES = {
    "onnxruntime": ("onnxruntime",),
    "torch": ("nuvem.models.torch_engine", "nuvem.models.weights"),
}


def preloads(environ: Mapping[str, str]) -> tuple[str, ...]:
    """What an idle worker for this replica imports ahead besides the handler's module."""
    raw = environ.get(MODEL_ENV)
    if not raw:
        return ()
    return _ENGINE_MODULES.get(str(json.loads(raw).get("engine")), ())


def node_cores() -> int:
    """The cores this process may run on (its affinity, which a cpuset narrows)."""
    return len(os.sched_getaffinity(0)) or 1


def batching_args(spec: FunctionSpec) -> list[str]:
    """The worker's batching options; a class with `predict` and no `batching:` runs calls
    one by one, still off the worker's event loop."""
    if spec.batching is None:
        return []
    return [
        "--max-batch-size",
        str(spec.batching.max_batch_size),
        "--max-delay-ms",
        str(spec.batching.max_delay_ms),
    ]
