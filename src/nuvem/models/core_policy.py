"""How many intra-op threads a model replica's forward pass takes, given what its node is doing.

A lone busy replica takes every core: a single caller should not leave cores idle. When
several replicas of the node are busy, each takes an equal share, at least one thread, so
their threads together never outnumber the cores by more than the replicas that could not
get one (more busy replicas than cores: one thread each, the OS shares the cores).
"""

from __future__ import annotations


def threads_for(cores: int, busy: int) -> int:
    """Threads for one busy replica's next forward pass; `busy` counts it too."""
    cores = max(1, cores)
    if busy <= 1:
        return cores
    return max(1, cores // busy)
