"""The gateway's front door against hostile clients: URL length, header count and size,
request read timeout, and a rate limit per source address on unauthenticated answers.

Connection-level limits (idle keep-alive, connections at once, the headers' deadline) are
set on uvicorn from the same settings by `server_options`. See docs/limits.md."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nuvem.config import Settings
from nuvem.errors import HeadersTooLarge, NuvemError, Overloaded, RequestTimeout, UriTooLong
from nuvem.gateway.asgi import Message, Receive, Scope, Send, respond_error
from nuvem.gateway.header_timeout import with_header_timeout
from nuvem.gateway.rate_limit import MemoryRateLimiter, shared_rate_limiter

_UNAUTH_PREFIX = "unauth:"
# Addresses remembered at most; past it, those refilled or unblocked are forgotten, so a
# flood from many addresses cannot grow the gateway's memory without bound.
_MAX_ADDRESSES = 10_000


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.Config options enforcing the connection-level limits, the headers' deadline
    included (httptools, with `HeaderTimeoutProtocol`)."""
    return {
        "http": with_header_timeout(settings.read_timeout),
        "timeout_keep_alive": settings.keep_alive,
        "limit_concurrency": settings.max_connections,
    }


def request_problem(scope: Scope, settings: Settings) -> NuvemError | None:
    """Why the request's line or headers pass a limit, or None."""
    url = len(scope.get("raw_path") or scope["path"].encode()) + len(scope["query_string"])
    if url > settings.max_url:
        return UriTooLong(
            f"the URL is {url} bytes, longer than the gateway's limit of {settings.max_url}",
            "send long inputs in the body, or raise NUVEM_MAX_URL",
        )
    headers = scope["headers"]
    if len(headers) > settings.max_headers:
        return HeadersTooLarge(
            f"the request has {len(headers)} headers, more than the gateway's limit of "
            f"{settings.max_headers}",
            "send fewer headers, or raise NUVEM_MAX_HEADERS",
        )
    size = sum(len(k) + len(v) for k, v in headers)
    if size > settings.max_header_bytes:
        return HeadersTooLarge(
            f"the request's headers are {size} bytes, more than the gateway's limit of "
            f"{settings.max_header_bytes}",
            "send smaller headers, or raise NUVEM_MAX_HEADER_BYTES",
        )
    return None


class Guard:
    """ASGI middleware in front of the gateway enforcing the per-request limits."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        # With a Redis queue, every gateway draws a source address's 401s from one bucket:
        # behind a load balancer, N gateways counting alone would allow N times the rate.
        # Redis sees only the 401s answered, not the requests refused once blocked.
        self.shared = shared_rate_limiter(settings)
        self.limiter = MemoryRateLimiter()  # alone, or while Redis cannot be reached
        self._blocked: dict[str, float] = {}  # address -> monotonic time it may come back

    def __getattr__(self, name: str) -> Any:
        # The server and tests reach the gateway's own attributes (close_streams, api).
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = request_problem(scope, self.settings)
        address = _address(scope)
        if problem is None and address is not None:
            problem = self._refused(address)
        if problem is not None:
            await respond_error(send, problem)
            return
        await self.app(scope, self._timed(receive), self._counting(send, address))

    def _refused(self, address: str) -> NuvemError | None:
        until = self._blocked.get(address)
        if until is None:
            return None
        wait = until - time.monotonic()
        if wait <= 0:
            del self._blocked[address]
            return None
        return Overloaded(
            f"too many unauthenticated requests from {address}",
            "send valid credentials; the limit is NUVEM_UNAUTH_RATE per second",
            retry_after=wait,
        )

    def _counting(self, send: Send, address: str | None) -> Send:
        rate, burst = self.settings.unauth_rate, self.settings.unauth_burst
        if address is None or rate <= 0:
            return send

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                if max(len(self.limiter), len(self._blocked)) > _MAX_ADDRESSES:
                    self._forget((burst or 1) / rate)
                wait = self._take(_UNAUTH_PREFIX + address, rate, burst or 1)
                if wait > 0:
                    self._blocked[address] = time.monotonic() + wait
            await send(message)

        return counted

    def _take(self, key: str, rate: float, burst: int) -> float:
        if self.shared is not None:
            # Imported here: a shared limiter is a Redis one, so redis is loaded by now,
            # and a gateway without Redis does not pay its import (0.15 s) at start.
            from redis import RedisError

            try:
                return self.shared.take(key, rate, burst)
            except RedisError:
                pass  # this gateway's own count holds the flood back until Redis is back
        return self.limiter.take(key, rate, burst)

    def _forget(self, refill: float) -> None:
        self.limiter.forget(refill)
        now = time.monotonic()
        self._blocked = {a: until for a, until in self._blocked.items() if until > now}

    def _timed(self, receive: Receive) -> Receive:
        timeout = self.settings.read_timeout
        done = False

        async def timed() -> Message:
            nonlocal done
            if done:  # the body is read: what follows is waiting for a disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout)
            except TimeoutError:
                raise RequestTimeout(
                    f"the request body paused for more than {timeout:g}s",
                    "send the body without pauses, or raise NUVEM_READ_TIMEOUT",
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                done = True
            return message

        return timed


def _address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None
