"""The runtime seam: what the controller, the router and the watchdog need of a replica,
and of the runtime that starts replicas.

Three runtimes implement it: `runtime/fake.py` (in this process, for tests),
`runtime/local.py` (a worker process per replica on this machine) and, on a cluster, one
whose replicas a Ray actor owns on another node. All of them pass the one contract suite
in tests/runtime/test_runtime_contract.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from nuvem.errors import FunctionFailed, ReplicaDied, Unavailable
from nuvem.runtime.environment import Environment
from nuvem.runtime.protocol import CallMeta
from nuvem.runtime.replica_state import ReplicaState
from nuvem.stack.function import FunctionSpec


@dataclass(slots=True)
class CallResult:
    """A handler's answer to one call, as HTTP: status, headers and the body's bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class SetupFailed(Unavailable):
    """`Runtime.start` could not bring a replica up: the handler did not load, its setup()
    raised or took too long, or the worker exited first."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A replica being started that no node can take yet."""

    replica_id: str
    short: str  # what is missing: cpu, gpu, memory, labels, engine or nodes
    reason: str  # in words, with what would help


# Exit causes every runtime gives a replica it stopped.
STOPPED = "stopped by the controller"
DRAIN_OVERRUN = "did not stop within the drain period"


def handler_raised(function: str, kind: str, message: str) -> FunctionFailed:
    """The error of a call whose handler raised `kind` saying `message`."""
    return FunctionFailed(
        f"function {function!r} raised {kind}: {message}",
        f"see `nuvem logs {function}` for the traceback",
    )


def replica_died(function: str, replica_id: str, cause: str | None) -> ReplicaDied:
    """The error of a call whose replica ended (`cause`) before it answered."""
    return ReplicaDied(
        f"function {function!r}: replica {replica_id} {cause} while handling the request",
        "mark the function `idempotent: true` to retry such calls on another replica",
    )


MODEL_ERROR = "ModelError: "  # how a worker reports a ModelError raised while loading


def load_failed(spec: FunctionSpec, message: str) -> SetupFailed:
    """The error of a start whose handler did not load or set up (`message` says why)."""
    if spec.model is not None:
        # A model has no handler of the user's to fix: its message names the weights or
        # architecture at fault, and the stack file is where to change them. A ModelError
        # carries its own hint already: one hint, not two stacked.
        if message.startswith(MODEL_ERROR):
            return SetupFailed(
                f"function {spec.name!r}: model failed to load: {message[len(MODEL_ERROR) :]}"
            )
        return SetupFailed(
            f"function {spec.name!r}: model failed to load: {message}",
            f"check the function's model block (docs/models.md); `nuvem logs {spec.name}` "
            "shows the traceback",
        )
    return SetupFailed(
        f"function {spec.name!r}: handler {spec.handler!r} failed to load: {message}",
        f"fix the handler in {spec.root}; `nuvem logs {spec.name}` shows the traceback",
    )


class Replica(Protocol):
    """One running copy of a function. The controller owns it; the router hands it calls.

    Every method runs on the gateway's event loop and none blocks: a runtime whose replica
    lives elsewhere keeps what it reports (state, memory) up to date in the background.
    """

    inflight: int  # calls the router handed this replica and has not released yet

    @property
    def id(self) -> str: ...
    @property
    def function(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...  # of the spec it was started from
    @property
    def node(self) -> str: ...  # where it runs: "local" for this machine
    @property
    def pid(self) -> int: ...  # its worker process, on its node
    @property
    def state(self) -> ReplicaState: ...
    @property
    def started_at(self) -> float: ...
    @property
    def exit_cause(self) -> str | None: ...  # once dead: how it ended, in words
    @property
    def retired(self) -> bool: ...  # asked to stop: its end is no failure

    def submit(self, meta: CallMeta, body: bytes) -> asyncio.Future[CallResult]:
        """Send one call. The future resolves with the answer, or raises FunctionFailed
        (the handler raised) or ReplicaDied (the replica ended before answering)."""
        ...

    def oldest_call_age(self) -> float:
        """Seconds the longest-running call in flight has taken so far (0 when idle)."""
        ...

    def memory(self) -> int | None:
        """Resident memory of its worker in bytes, or None when it cannot be read."""
        ...

    async def wait_dead(self) -> None:
        """Return once the replica is dead (its calls failed, `exit_cause` set)."""
        ...

    async def drain_and_stop(self, grace: float) -> None:
        """Take no new calls, let those in flight finish (up to `grace` s), then end."""
        ...

    def kill(self, reason: str) -> None:
        """End it now: calls in flight fail with ReplicaDied; `reason` becomes the cause."""
        ...


class Runtime(Protocol):
    """Where replicas run: starts them and owns whatever they share (pools, connections)."""

    async def start(self, spec: FunctionSpec, env: Environment, replica_id: str) -> Replica:
        """Start one replica and return it ready for calls; raise SetupFailed if it cannot
        be (and leave nothing of it running)."""
        ...

    def pending(self, function: str) -> list[Pending]:
        """Starts of `function` waiting for room (no node has the resources yet)."""
        ...

    async def close(self) -> None:
        """Release what the runtime holds itself; its replicas are the controller's."""
        ...
