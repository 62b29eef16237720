"""Start-up marks: when each phase of a launch was reached, for `bench/launch.py`.

Standard library only and cheap when off: the gateway, idle workers and replicas all call
`mark(phase)`. With `NUVEM_STARTUP_MARKS` naming a file, each mark appends one JSON line
(`phase`, `t`: `time.monotonic()`, `pid`) to it; the monotonic clock is the machine's, so
the marks of every process of one launch line up. Read here and not in config.py because
workers run this before anything else of nuvem (and outside the gateway's settings); the
variable is a file path, never a secret, so the runtime carries it into workers.
"""

from __future__ import annotations

import json
import os
import time

VARIABLE = "NUVEM_STARTUP_MARKS"


def mark(phase: str) -> None:
    path = os.environ.get(VARIABLE)
    if not path:
        return
    line = json.dumps({"phase": phase, "t": time.monotonic(), "pid": os.getpid()}) + "\n"
    try:
        # One append of one short line: atomic beside the other processes' appends.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError:
        return  # a mark must never fail a start
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
