"""`Watchdog`: kills replicas over their memory limit or stuck in a call.

The controller runs it once per tick and function. A killed replica dies with the reason
as its exit cause; the controller's exit watcher reports and replaces it.
"""

from __future__ import annotations

from nuvem.control.deployment import Deployment
from nuvem.runtime.replica_state import ReplicaState
from nuvem.stack.function import FunctionSpec

STUCK_GRACE = 5.0  # seconds past twice the longest deadline before a call counts as stuck


def stuck_after(spec: FunctionSpec) -> float:
    """Seconds after which a call in flight means the replica is stuck."""
    # Async jobs may declare a longer deadline than calls (jobs.timeout): not stuck then.
    longest = max(spec.timeout, spec.jobs.timeout or 0.0)
    return longest * 2 + STUCK_GRACE


def kill_reason(spec: FunctionSpec, memory: int | None, oldest_call_age: float) -> str | None:
    """Why a replica with this memory use and oldest call must die; None if it may live."""
    limit = spec.resources.memory
    if limit is not None and memory is not None and memory > limit:
        return f"exceeded its memory limit ({memory / 2**20:.0f} MiB > {limit / 2**20:.0f} MiB)"
    after = stuck_after(spec)
    if oldest_call_age > after:
        return f"was stuck in a call for over {after:.0f}s"
    return None


class Watchdog:
    def check(self, deployment: Deployment) -> None:
        spec = deployment.spec
        limited = spec.resources.memory is not None
        for replica in deployment.replicas:
            if replica.state is ReplicaState.DEAD:
                continue
            # Memory is read only where a limit asks for it: a reading costs a file read.
            memory = replica.memory() if limited else None
            reason = kill_reason(spec, memory, replica.oldest_call_age())
            if reason is not None:
                replica.kill(reason)
