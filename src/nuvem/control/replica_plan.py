"""`plan`: what one reconcile step does to a function's replicas, decided purely.

As Ray Serve's deployment state returns its scale requests, `plan` looks at a snapshot of
a deployment (`DeploymentView`) and returns how many replicas to start and which to
retire, with the reason; the controller carries that out. The rules:

- Starts make up for missing current replicas, never before `retry_at` (the back-off
  after failed starts), and never take the replicas alive or starting above
  `desired + surge`.
- Only ready replicas beyond `desired` may be retired while they are ready: a rolling
  update never takes the last ready replica away; outdated ones go as current ones
  become ready. Replicas not yet ready hold no calls and go first.
- Outdated replicas (from an older spec) are retired before current ones; among ready
  ones, the least busy go first.
"""

from __future__ import annotations

from dataclasses import dataclass

SCALED_DOWN = "scaled down"
REPLACED = "replaced by the updated spec"
MOVED = "moved off its draining node"


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """A replica that is alive and not draining, as the plan sees it."""

    id: str
    current: bool  # started from the present spec, on a node that is not leaving
    ready: bool  # taking calls (else still starting)
    inflight: int
    moving: bool = False  # its node is draining: it is replaced elsewhere, then retired


@dataclass(frozen=True, slots=True)
class DeploymentView:
    desired: int
    replicas: tuple[ReplicaView, ...]  # starting or ready; draining and dead ones left out
    starting: int  # start attempts under way, not yet replicas
    retry_at: float  # no start before this time (back-off after failed starts)
    now: float
    surge: int  # how many above `desired` may be alive or starting at once (>= 1)


@dataclass(frozen=True, slots=True)
class Retirement:
    replica: str  # its id
    reason: str


@dataclass(frozen=True, slots=True)
class ReplicaPlan:
    start: int = 0
    retire: tuple[Retirement, ...] = ()


def plan(view: DeploymentView) -> ReplicaPlan:
    current = [r for r in view.replicas if r.current]
    outdated = [r for r in view.replicas if not r.current]
    # Ready replicas beyond the desired count: how many may go while they still serve.
    spare = max(0, sum(r.ready for r in view.replicas) - view.desired)
    retire: list[Retirement] = []

    def take(candidates: list[ReplicaView], count: int, reason: str) -> None:
        nonlocal spare
        for replica in sorted(candidates, key=lambda r: (r.ready, r.inflight)):
            if count <= 0 or (replica.ready and spare <= 0):
                return
            if replica.ready:
                spare -= 1
            retire.append(Retirement(replica.id, reason))
            count -= 1

    moving = [r for r in outdated if r.moving]
    stale = [r for r in outdated if not r.moving]
    take(moving, len(moving), MOVED)
    take(stale, len(stale), REPLACED)
    take(current, len(current) + view.starting - view.desired, SCALED_DOWN)
    missing = view.desired - len(current) - view.starting
    start = 0
    if missing > 0 and view.now >= view.retry_at:
        room = view.desired + view.surge - len(view.replicas) - view.starting
        start = max(0, min(missing, room))
    return ReplicaPlan(start, tuple(retire))
