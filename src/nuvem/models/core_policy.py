"""How many intra-op threads a model replica's forward pass takes, given what its node is doing.

A lone busy replica takes every core that the rest of the machine leaves idle: a single
caller should not leave cores unused, and a core a neighbour keeps busy is no gain (the
pass waits on its slowest thread). When several replicas of the node are busy, each takes
an equal share, at least one thread, so their threads together never outnumber the cores
by more than the replicas that could not get one (more busy replicas than cores: one
thread each, the OS shares the cores).
"""

from __future__ import annotations

import math

# A core counts as free when others used at most this much of it lately: the gateway's own
# share of a lone call (about 0.4 ms of CPU per call) must not keep a replica narrow.
SLACK = 0.25


def threads_for(cores: int, busy: int, others: float = 0.0) -> int:
    """Threads for one busy replica's next forward pass; `busy` counts it too, `others` is
    how many cores the rest of the machine kept busy lately (models/cpu_use.py)."""
    cores = max(1, cores)
    if busy > 1:
        return max(1, cores // busy)
    return max(1, min(cores, math.floor(cores - others + SLACK)))
