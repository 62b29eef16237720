"""How long to wait before the next try: exponential, capped, with jitter."""

from __future__ import annotations

import random
from collections.abc import Callable


def retry_delay(
    retry: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before retry number `retry` (1 for the first retry).

    Half the exponential delay is fixed and half is random ("equal jitter"): retries of jobs
    that failed together spread out instead of hitting a recovering function at once, and no
    retry comes sooner than half its delay.
    """
    exponential = min(cap, base * 2.0 ** max(retry - 1, 0))
    return exponential / 2 + rand() * exponential / 2
