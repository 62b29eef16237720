"""bench/pause_watch.py: a tick that comes late is a pause of the machine, and only that."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pause_watch", BENCH / "pause_watch.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_late_tick_is_a_pause_and_counts_only_where_it_overlaps() -> None:
    times = iter([0.0, 0.05, 0.1, 2.5, 2.55])
    watch = load().PauseWatch(gap=1.0, clock=lambda: next(times))
    for _ in range(5):
        watch.step()
    assert watch.pauses == [(0.1, 2.5)]
    assert watch.paused(0.0, 1.0) == 0.9
    assert watch.paused(2.0, 10.0) == 0.5
    assert watch.paused(3.0, 4.0) == 0.0


CHILD = f"""
import json, sys, time
sys.path.insert(0, {str(BENCH)!r})
from pause_watch import PauseWatch
with PauseWatch(tick=0.01, gap=0.5) as watch:
    print("ready", flush=True)
    time.sleep(3.0)
print(json.dumps([b - a for a, b in watch.pauses]), flush=True)
"""


def test_a_stopped_process_sees_its_stop_as_a_pause() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            time.sleep(0.3)
            os.kill(child.pid, signal.SIGSTOP)
            time.sleep(1.5)  # the machine "paused", as far as the child can tell
            os.kill(child.pid, signal.SIGCONT)
            pauses = json.loads(child.stdout.readline())
        finally:
            child.kill()
    assert max(pauses) >= 1.4, pauses
