"""How long to wait before the next try: exponential, capped, optionally with jitter.

One formula for every retry in nuvem: replica starts (the controller's back-off after
failed starts), async job retries and callback deliveries.
"""

from __future__ import annotations

from collections.abc import Callable


def backoff(
    attempt: int, base: float, cap: float, jitter: Callable[[], float] | None = None
) -> float:
    """Seconds to wait after `attempt` consecutive failures (1 after the first).

    `base` doubles with each failure up to `cap`. With `jitter` (e.g. `random.random`), half
    the delay is fixed and half is random ("equal jitter"): tries that failed together
    spread out instead of hitting a recovering function at once, and none comes sooner
    than half its delay.
    """
    exponential = min(cap, base * 2.0 ** max(attempt - 1, 0))
    if jitter is None:
        return exponential
    return exponential / 2 + jitter() * exponential / 2
