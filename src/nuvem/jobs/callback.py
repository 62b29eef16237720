"""Delivering a finished job's result to its callback URL: the seam and its HTTP sender."""

from __future__ import annotations

from typing import Protocol

import httpx

CALLBACK_TIMEOUT = 10.0


class CallbackSender(Protocol):
    async def send(self, url: str, headers: list[tuple[str, str]], body: bytes) -> int:
        """POST the result; the status code of the answer, or OSError/httpx error."""
        ...

    async def close(self) -> None: ...


class HttpCallbackSender:
    def __init__(self, timeout: float = CALLBACK_TIMEOUT) -> None:
        # No redirects: a redirect could lead past the checks made on the URL itself.
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def send(self, url: str, headers: list[tuple[str, str]], body: bytes) -> int:
        response = await self._http.post(url, headers=headers, content=body)
        return response.status_code

    async def close(self) -> None:
        await self._http.aclose()
