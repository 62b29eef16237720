"""The Lua scripts of the Redis job queue; each touches the keys of one function only.

A script names the `FunctionKeys` fields it takes as KEYS, so the keys it is given always
share the function's hash tag and hash to one slot: Redis Cluster runs it on the master
of that slot (and would refuse keys of two slots with CROSSSLOT). Each script handles a
batch of one function's jobs, so a step over many jobs of many functions is one call per
function: redis-py cannot pipeline scripts on a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nuvem.stores.redis_keys import FunctionKeys


@dataclass(frozen=True, slots=True)
class JobScript:
    name: str
    keys: tuple[str, ...]  # FunctionKeys fields, in KEYS order
    source: str

    def keys_for(self, function: str) -> list[str]:
        found = FunctionKeys.of(function)
        return [str(getattr(found, field)) for field in self.keys]


# A new entry per job, counted in `enqueued` in the same step. ARGV: job ids.
ENQUEUE = JobScript(
    "enqueue",
    ("stream", "enqueued"),
    """
for _, job_id in ipairs(ARGV) do
  redis.call('XADD', KEYS[1], '*', 'id', job_id)
  redis.call('HINCRBY', KEYS[2], job_id, 1)
end
return #ARGV
""",
)

# Ack and delete entries; only an entry really deleted lowers the count, so acking twice
# (two gateways settling the same entry) counts once. Acked entries are deleted, or the
# stream would grow by one entry per job forever. ARGV: group, then entry id, job id pairs.
ACK = JobScript(
    "ack",
    ("stream", "enqueued"),
    """
local deleted = 0
for i = 2, #ARGV, 2 do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then
    deleted = deleted + 1
    if redis.call('HINCRBY', KEYS[2], ARGV[i + 1], -1) <= 0 then
      redis.call('HDEL', KEYS[2], ARGV[i + 1])
    end
  end
end
return deleted
""",
)

# Retries whose time has come move from the delayed set to the stream, in one step: no
# gateway can enqueue the same retry twice. ARGV: now, most to move.
PROMOTE = JobScript(
    "promote",
    ("delayed", "stream", "enqueued"),
    """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, job_id in ipairs(due) do
  redis.call('ZREM', KEYS[1], job_id)
  redis.call('XADD', KEYS[2], '*', 'id', job_id)
  redis.call('HINCRBY', KEYS[3], job_id, 1)
end
return #due
""",
)

SCRIPTS = (ENQUEUE, ACK, PROMOTE)


class Scripts:
    """The scripts registered with one client (by SHA; redis-py loads them again where a
    node does not know them, as after a failover or a restart)."""

    def __init__(self, client: Any) -> None:
        self._registered = {s.name: client.register_script(s.source) for s in SCRIPTS}

    def run(self, script: JobScript, function: str, args: list[Any]) -> Any:
        return self._registered[script.name](keys=script.keys_for(function), args=args)
