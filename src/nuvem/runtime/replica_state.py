"""`ReplicaState`: where a replica is in its life, as the router and the controller see it."""

from __future__ import annotations

import enum


class ReplicaState(enum.Enum):
    STARTING = "starting"  # process spawned; handler loading, setup() running
    READY = "ready"  # accepting calls
    DRAINING = "draining"  # finishing calls in flight; takes no new ones
    DEAD = "dead"  # process exited; the record remains for the exit cause
