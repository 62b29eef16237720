"""What a replica serving a model is told at start: its model, cache and thread settings."""

from __future__ import annotations

import json
from pathlib import Path

from nuvem.stack.function import FunctionSpec
from nuvem.stack.model import intra_op_threads

# Read by nuvem.models.handler inside the replica.
MODEL_ENV = "NUVEM_MODEL"
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def model_environ(spec: FunctionSpec, cache: Path | None) -> dict[str, str]:
    """Environment variables for a model replica (none for a plain function)."""
    if spec.model is None:
        return {}
    threads = intra_op_threads(
        spec.model,
        spec.resources.cpu,
        "cpu" in spec.resources.model_fields_set,
        spec.scaling.min,
    )
    config = {
        "function": spec.name,
        "model": spec.model.model_dump(mode="json"),
        "cache": str(cache) if cache is not None else None,
        "threads": threads,
    }
    environ = dict.fromkeys(_THREAD_VARIABLES, str(threads))
    environ[MODEL_ENV] = json.dumps(config)
    return environ


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
