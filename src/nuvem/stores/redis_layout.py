"""Moving a single Redis from the key layout before hash tags to `FunctionKeys`.

Before, a function's stream was `nuvem:jobs:NAME`, and the retries of all functions
waited in `nuvem:jobs:delayed` (members `NAME|job id`) with one `nuvem:jobs:enqueued`
hash for every job. A gateway that finds such keys moves their contents to the new keys
when it starts, one old stream (or one function's retries) per script, so gateways
starting at once move each thing once. Nothing would be lost without this step, since
the job records are the authority and the reaper enqueues a due job that no stream holds,
but those jobs would wait two leases. A Redis Cluster never held the old layout: its
scripts touched keys of several slots, which a cluster refuses.
"""

from __future__ import annotations

from typing import Any

from nuvem.stores.redis_keys import FUNCTIONS, LAYOUT, LAYOUT_VERSION, PREFIX, FunctionKeys

OLD_DELAYED = PREFIX + "delayed"
OLD_ENQUEUED = PREFIX + "enqueued"

_MOVE_STREAM = """
local entries = redis.call('XRANGE', KEYS[1], '-', '+')
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'id' then
      redis.call('XADD', KEYS[2], '*', 'id', fields[i + 1])
      redis.call('HINCRBY', KEYS[3], fields[i + 1], 1)
    end
  end
end
redis.call('DEL', KEYS[1])
return #entries
"""

_MOVE_RETRIES = """
local moved = 0
for i = 1, #ARGV, 2 do
  local due = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if due then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZADD', KEYS[2], due, ARGV[i + 1])
    moved = moved + 1
  end
end
return moved
"""


def migrate_layout(client: Any, create_group: Any) -> int:
    """Move what the old layout holds; how many entries and retries moved. `create_group`
    makes a function's stream and consumer group, as the store does before reading it."""
    if client.get(LAYOUT) == LAYOUT_VERSION.encode():
        return 0
    moved = 0
    move_stream = client.register_script(_MOVE_STREAM)
    for key in client.scan_iter(match=PREFIX + "*", _type="stream"):
        name = key.decode()
        if FunctionKeys.is_tagged(name):
            continue
        keys = FunctionKeys.of(name.removeprefix(PREFIX))
        create_group(keys.function)
        moved += int(move_stream(keys=[name, keys.stream, keys.enqueued]))
    retries: dict[str, list[str]] = {}
    if client.type(OLD_DELAYED) == b"zset":
        for member in client.zrange(OLD_DELAYED, 0, -1):
            function, _, job_id = member.decode().partition("|")
            retries.setdefault(function, []).extend([member.decode(), job_id])
    move_retries = client.register_script(_MOVE_RETRIES)
    for function, pairs in retries.items():
        client.sadd(FUNCTIONS, function)
        moved += int(
            move_retries(keys=[OLD_DELAYED, FunctionKeys.of(function).delayed], args=pairs)
        )
    if client.type(OLD_ENQUEUED) == b"hash":
        # Its counts were of entries in the old streams, now gone; the moves counted anew.
        client.delete(OLD_ENQUEUED)
    client.set(LAYOUT, LAYOUT_VERSION)
    return moved
