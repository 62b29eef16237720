"""Delivering a finished job's result to its callback URL: the seam and its HTTP sender."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import httpx

CALLBACK_TIMEOUT = 10.0


class CallbackSender(Protocol):
    async def send(self, url: str, headers: list[tuple[str, str]], body: bytes) -> int:
        """POST the result; the status code of the answer, or OSError/httpx error."""
        ...

    async def close(self) -> None: ...


class HttpCallbackSender:
    def __init__(self, timeout: float = CALLBACK_TIMEOUT) -> None:
        self._timeout = timeout
        # Made on the first callback: most gateways never send one, and httpx is a
        # twentieth of a second of the gateway's start otherwise.
        self._http: httpx.AsyncClient | None = None

    async def send(self, url: str, headers: list[tuple[str, str]], body: bytes) -> int:
        if self._http is None:
            import httpx

            # No redirects: a redirect could lead past the checks made on the URL itself.
            self._http = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        response = await self._http.post(url, headers=headers, content=body)
        return response.status_code

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
