"""Handlers the tests deploy."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from nuvem import HTTPError, Request, Response


def echo(req: Request) -> bytes:
    return req.body


def describe(req: Request) -> dict[str, Any]:
    return {
        "method": req.method,
        "path": req.path,
        "query": req.query,
        "headers": dict(req.headers),
        "body": req.text(),
        "replica": os.environ.get("NUVEM_REPLICA"),
        "pid": os.getpid(),
    }


def respond(req: Request) -> Response:
    spec = req.json()
    return Response(spec["status"], spec.get("body", ""), spec.get("headers"))


def returns(req: Request) -> Any:
    kind = req.query["kind"]
    return {"bytes": b"\x00\x01", "str": "text", "dict": {"a": 1}, "list": [1, 2], "none": None}[
        kind
    ]


def fail(req: Request) -> None:
    raise ValueError("the input was not acceptable")


def sleep(req: Request) -> str:
    time.sleep(float(req.query.get("seconds", "0.2")))
    return "slept"


async def async_sleep(req: Request) -> str:
    await asyncio.sleep(float(req.query.get("seconds", "0.2")))
    return "slept"


def crash(req: Request) -> str:
    """Kill this replica mid-call the first time a marker file is absent (then create it)."""
    marker = req.query.get("marker")
    if marker and not os.path.exists(marker):
        with open(marker, "w") as handle:
            handle.write(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    if not marker:
        os.kill(os.getpid(), signal.SIGKILL)
    return f"survived on {os.environ.get('NUVEM_REPLICA')}"


class Counter:
    def setup(self) -> None:
        self.count = 0
        self.pid = os.getpid()

    def __call__(self, req: Request) -> dict[str, int]:
        self.count += 1
        return {"count": self.count, "pid": self.pid}


class BrokenSetup:
    def setup(self) -> None:
        raise RuntimeError("model file missing")

    def __call__(self, req: Request) -> str:
        return "never"


class Gated:
    """Its setup waits until the file named by GATE exists: a start the test holds open."""

    def setup(self) -> None:
        gate = os.environ["GATE"]
        while not os.path.exists(gate):
            time.sleep(0.02)

    def __call__(self, req: Request) -> str:
        return "opened"


def version(req: Request) -> str:
    import six  # type: ignore[import-untyped]

    return str(six.__version__)


def allocate(req: Request) -> str:
    """Hold `mib` MiB of resident memory for `hold` seconds."""
    block = bytearray(int(req.query["mib"]) * 2**20)
    for i in range(0, len(block), 4096):  # touch every page so it is resident
        block[i] = 1
    time.sleep(float(req.query.get("hold", "0")))
    return f"held {len(block)} bytes"


def environment(req: Request) -> dict[str, str]:
    return dict(os.environ)


def parses_json(req: Request) -> Any:
    return {"parsed": req.json()}


def parses_text(req: Request) -> str:
    return req.text().upper()


async def refuses(req: Request) -> str:
    if req.query.get("who") != "friend":
        raise HTTPError(403, "only friends may call; add ?who=friend")
    return "welcome"
