"""Every job script touches the keys of one function only, so they hash to one slot and a
Redis Cluster runs it (it refuses keys of two slots with CROSSSLOT); and the keys of
different functions spread over the slots."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from nuvem.stack.function import NAME_PATTERN
from nuvem.stores.redis_keys import FunctionKeys
from nuvem.stores.redis_scripts import SCRIPTS

# Function names as the stack allows them, and names of models (dots, capitals) too.
NAMES = st.from_regex(NAME_PATTERN, fullmatch=True) | st.from_regex(
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,40}", fullmatch=True
)


@given(NAMES)
def test_every_scripts_keys_hash_to_one_slot(function: str) -> None:
    for script in SCRIPTS:
        keys = script.keys_for(function)
        assert len(keys) == len(script.keys) >= 2
        assert len({key_slot(k.encode()) for k in keys}) == 1, (script.name, keys)


@given(NAMES)
def test_all_keys_of_a_function_share_its_hash_tag(function: str) -> None:
    keys = FunctionKeys.of(function)
    slots = {key_slot(k.encode()) for k in (keys.stream, keys.delayed, keys.enqueued)}
    assert slots == {key_slot(f"{{fn:{function}}}".encode())}
    assert FunctionKeys.is_tagged(keys.stream)


def test_functions_spread_over_the_slots() -> None:
    slots = {key_slot(FunctionKeys.of(f"fn-{i}").stream.encode()) for i in range(200)}
    assert len(slots) > 190
    # ... and over the three masters of a cluster that splits the slots in thirds.
    assert {slot * 3 // 16384 for slot in slots} == {0, 1, 2}
