"""`nuvem up`'s early start: the stack's first replicas get workers started before the gateway."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nuvem.cli.launch import prestarted
from nuvem.config import Settings
from nuvem.runtime.early_process import EarlyProcess
from nuvem.stack.loader import load_stack_text
from support import HANDLERS, block_until

STACK = """
functions:
  plain: {handler: 'handlers:echo', scaling: {min: 2, max: 2}}
  own-environment: {handler: 'handlers:echo', requirements: [six]}
  on-a-gpu: {handler: 'handlers:echo', resources: {gpu: 1}}
"""


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def runs_pool_worker(pid: int) -> None:
    # Between fork and exec the child's cmdline is empty or still the parent's.
    block_until(
        lambda: "nuvem.runtime.pool_worker" in cmdline(pid),
        what=lambda: f"worker {pid} running the pool worker: {cmdline(pid)}",
    )


def test_cpu_functions_in_the_platform_environment_get_one_idle_worker_per_replica(
    tmp_path: Path,
) -> None:
    stack = load_stack_text(STACK, "nuvem.yaml", HANDLERS)
    pool = prestarted(stack, Settings(state_dir=tmp_path))
    try:
        idle = [worker for group in pool._idle.values() for worker in group]
        assert len(idle) == 2  # plain's two replicas; the others are not known ahead
        for worker in idle:
            assert isinstance(worker.process, EarlyProcess)
            assert worker.process.returncode is None
            runs_pool_worker(worker.process.pid)
    finally:
        pool.abandon()
    assert all(worker.process.returncode is not None for worker in idle)
    assert pool.idle_count() == 0


def test_no_idle_workers_when_the_pool_is_off(tmp_path: Path) -> None:
    stack = load_stack_text(STACK, "nuvem.yaml", HANDLERS)
    pool = prestarted(stack, Settings(state_dir=tmp_path, warm_workers=0))
    assert pool.idle_count() == 0
    pool.abandon()


def test_the_gateway_path_imports_no_library_only_some_stacks_use() -> None:
    # What `nuvem up` imports before it serves, none of which every stack uses: torch is
    # the model workers', Redis and Ray a stack's that configures them; FastAPI and the
    # /system APIs load in a thread once the gateway listens (api_loader.py), the image
    # functions' and the callbacks' HTTP clients when first used.
    heavy = ("torch", "numpy", "onnxruntime", "PIL", "redis", "ray")
    later = ("fastapi", "starlette", "nuvem.gateway.system_api", "aiohttp", "httpx")
    code = (
        "import sys, nuvem.cli.main, nuvem.cli.launch, nuvem.cli.server, nuvem.platform; "
        f"print(' '.join(m for m in {heavy + later!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == []
