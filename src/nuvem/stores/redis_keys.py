"""`FunctionKeys`: where the Redis job queue keeps one function's state, all in one slot.

Every key of a function carries the hash tag `{fn:NAME}`, so Redis Cluster stores them on
one master and a script or MULTI may touch several of them. Nothing that spans functions
needs an atomic step: the few global keys (the set of functions with retries waiting, the
reaper's lock, the layout version) are each read and written on their own.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "nuvem:jobs:"
# Functions that have had a retry waiting in their delayed set: the reaper looks in these.
FUNCTIONS = PREFIX + "functions"
REAPER_LOCK = PREFIX + "reaper"
# The key layout's version; absent on a Redis that an older nuvem used (or a fresh one).
LAYOUT = PREFIX + "layout"
LAYOUT_VERSION = "2"


@dataclass(frozen=True, slots=True)
class FunctionKeys:
    function: str
    stream: str  # entries {id: job id}, read by the consumer group
    delayed: str  # sorted set: job id -> when its retry is due
    enqueued: str  # hash: job id -> entries it has in the stream (added, not yet acked)

    @classmethod
    def of(cls, function: str) -> FunctionKeys:
        tag = f"{PREFIX}{{fn:{function}}}:"
        return cls(function, tag + "stream", tag + "delayed", tag + "enqueued")

    @staticmethod
    def is_tagged(key: str) -> bool:
        """A key of this layout (as opposed to the one before hash tags)."""
        return key.startswith(PREFIX + "{fn:")
