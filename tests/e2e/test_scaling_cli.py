"""The real CLI: an autoscaled function idles to zero, `nuvem top` shows why, a call wakes it."""

from __future__ import annotations

import json

import pytest

from support import Nuvem, block_until

pytestmark = pytest.mark.e2e

STACK = """\
functions:
  hello:
    handler: functions:hello
    scaling: {min: 0, max: 3, mode: concurrency, zero_after_s: 1s, panic_window_s: 1s,
              stable_window_s: 2s}
"""


def test_idle_to_zero_shown_by_top_and_woken_by_a_call(nuvem: Nuvem) -> None:
    nuvem.write("nuvem.yaml", STACK)
    nuvem.up("-f", "nuvem.yaml")
    block_until(lambda: nuvem.function("hello")["replicas"] == 0, 30, "hello at zero replicas")
    assert nuvem.function("hello")["status"] == "idle"  # not "stopped": a call wakes it
    nuvem.run("deploy", "-f", "nuvem.yaml")  # waiting for an idle function returns at once

    frame = nuvem.run("top", "--once").stdout
    assert "hello" in frame
    assert "concurrency" in frame
    assert "0/0" in frame
    assert "scale to zero from 1: idle for" in frame

    answer = nuvem.run("invoke", "hello", "-d", "").stdout  # held until a replica is ready
    assert json.loads(answer)["message"] == "hello, world"
    assert nuvem.function("hello")["availableReplicas"] == 1
    events = nuvem.run("events", "--function", "hello").stdout
    assert "scale up 0 -> 1" in events
