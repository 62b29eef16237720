"""A real HTTP server that records the callbacks it receives (importable from tests/)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from support import free_port, wait_until


@dataclass
class Callback:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    received: list[Callback] = field(default_factory=list)
    fail_next: int = 0  # answer this many requests with 503 before accepting

    def by_call_id(self) -> dict[str, Callback]:
        return {c.headers["x-call-id"]: c for c in self.received}

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status = 204
        if self.fail_next > 0:
            self.fail_next -= 1
            status = 503
        else:
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            self.received.append(Callback(scope["path"], headers, body))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def callback_receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    receiver = Receiver(f"http://127.0.0.1:{port}")
    config = uvicorn.Config(
        receiver.app, host="127.0.0.1", port=port, log_level="warning", interface="asgi3"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, what="callback receiver started")
    try:
        yield receiver
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
