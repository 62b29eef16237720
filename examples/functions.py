"""Example handlers for examples/nuvem.yaml."""

from __future__ import annotations

import asyncio
import os

from nuvem import HTTPError, Request, Response


def echo(req: Request) -> Response:
    """Answer with the request body, as it came."""
    content_type = req.headers.get("content-type", "application/octet-stream")
    return Response(200, req.body, {"content-type": content_type})


def hello(req: Request) -> dict[str, object]:
    name = req.query.get("name", "world")
    return {"message": f"hello, {name}", "path": req.path, "replica": os.environ["NUVEM_REPLICA"]}


async def slow(req: Request) -> str:
    """An async handler: waits `?seconds=` (default 0.1) without blocking its replica."""
    await asyncio.sleep(float(req.query.get("seconds", "0.1")))
    return "done"


class WordCount:
    """A class handler: setup() runs once per replica, then every call reuses its state."""

    def setup(self) -> None:
        self.calls = 0

    def __call__(self, req: Request) -> dict[str, int]:
        self.calls += 1
        body = req.json()  # a body that is not JSON answers 400 by itself
        text = body.get("text", "") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise HTTPError(400, 'send a JSON object with a "text" string, e.g. {"text": "a b"}')
        words = text.split()
        return {"words": len(words), "calls_on_this_replica": self.calls}
