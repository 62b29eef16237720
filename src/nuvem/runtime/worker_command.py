"""How a worker process is started: its command line and its environment variables.

Shared by the local runtime and by the replica host on a cluster node, so a replica behaves
the same wherever it runs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from nuvem import startup_marks as marks
from nuvem.runtime.environment import Environment
from nuvem.runtime.model_env import batching_args, model_environ
from nuvem.stack.function import FunctionSpec

# Never handed to user code: the platform's own settings, and on a node the cluster engine's
# (Ray's token among them).
_PRIVATE_PREFIXES = ("NUVEM_", "RAY_")


def worker_argv(spec: FunctionSpec, env: Environment, fd: int) -> list[str]:
    return [
        str(env.python),
        "-m",
        "nuvem.runtime.worker",
        "--fd",
        str(fd),
        "--handler",
        spec.handler,
        "--root",
        spec.root,
        "--threads",
        str(spec.threads),
        *batching_args(spec),
    ]


def worker_environ(
    spec: FunctionSpec,
    env: Environment,
    replica_id: str,
    model_cache: Path | None,
    base: Mapping[str, str] | None = None,
    gpus: tuple[int, ...] | None = None,
) -> dict[str, str]:
    """The worker's environment: `base` (this process's) without private variables, thread
    counts from the spec's CPUs, its GPUs (`gpus`: device indices; None keeps what the
    cluster engine set), the function's own `env:` last."""
    inherited = os.environ if base is None else base
    environ = {k: v for k, v in inherited.items() if not k.startswith(_PRIVATE_PREFIXES)}
    if inherited.get(marks.VARIABLE):  # a file path the benchmark reads, not a secret
        environ[marks.VARIABLE] = inherited[marks.VARIABLE]
    threads = str(max(1, math.ceil(spec.resources.cpu)))
    environ.update(
        {
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
            "NUVEM_FUNCTION": spec.name,
            "NUVEM_REPLICA": replica_id,
        }
    )
    # Idle OpenMP threads sleep at once instead of spinning for a while: a model replica's
    # threads change with the node's load, and spinning ones steal the cores that the
    # node's other replicas were just given. An operator's own choice is kept.
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if spec.resources.gpu == 0:
        environ["CUDA_VISIBLE_DEVICES"] = ""
    elif gpus is not None:
        environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(index) for index in gpus)
    if env.path is not None:
        environ["VIRTUAL_ENV"] = str(env.path)
        environ.pop("PYTHONPATH", None)
    else:
        # The platform's interpreter: make sure `import nuvem` finds this very package.
        package_root = str(Path(__file__).resolve().parents[2])
        environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, environ.get("PYTHONPATH", "")) if p
        )
    environ.update(model_environ(spec, model_cache))
    environ.update(spec.env)
    return environ
