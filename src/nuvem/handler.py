"""The handler contract: what a user function receives and may return.

This module is imported inside every worker process, including ones that run in a
function's own virtual environment, so it depends on the standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only view of HTTP headers (last value wins on repeats)."""

    __slots__ = ("_items", "_map")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = list(items)
        self._map = {k.lower(): v for k, v in self._items}

    def __getitem__(self, key: str) -> str:
        return self._map[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._map

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def getlist(self, key: str) -> list[str]:
        """Every value of a repeated header, in the order received."""
        lowered = key.lower()
        return [v for k, v in self._items if k.lower() == lowered]

    def raw(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(slots=True)
class Request:
    """One call to a function, as the handler sees it."""

    body: bytes = b""
    method: str = "POST"
    path: str = "/"
    query_string: str = ""
    headers: Headers = field(default_factory=Headers)

    @property
    def query(self) -> dict[str, str]:
        """Query parameters; for a repeated key the last value wins (see `query_list`)."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))

    @property
    def query_list(self) -> list[tuple[str, str]]:
        return parse_qsl(self.query_string, keep_blank_values=True)

    def json(self) -> Any:
        """The body parsed as JSON; raises `BodyError` (the caller's 400) when it is not."""
        if not self.body:
            raise BodyError("request body is empty; send a JSON document")
        try:
            return json.loads(self.body)
        except UnicodeDecodeError as exc:
            raise BodyError(f"request body is not UTF-8 ({exc.reason}); send JSON") from exc
        except json.JSONDecodeError as exc:
            raise BodyError(
                f"request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                f"column {exc.colno}; send a JSON document"
            ) from exc

    def text(self) -> str:
        """The body decoded as UTF-8; raises `BodyError` (the caller's 400) when it is not."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BodyError(
                f"request body is not UTF-8 text: {exc.reason} at byte {exc.start}; send UTF-8 text"
            ) from exc


class HTTPError(Exception):
    """Raise from a handler to answer the caller with a 4xx and `{"error": message}` on purpose.

    Unlike any other exception it is not the handler's failure: the replica answers the call
    with this status instead of a 500, and nothing is logged as a crash.
    """

    def __init__(self, status: int, message: str) -> None:
        if not 400 <= status <= 499:
            raise ValueError(
                f"nuvem.HTTPError status {status} is not a 4xx; use 400-499 for the caller's "
                "mistakes, or let the exception propagate for a server error"
            )
        super().__init__(message)
        self.status = status
        self.message = message

    def answer(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """Status, headers and body of the JSON error the caller receives."""
        data = json.dumps({"error": self.message}, ensure_ascii=False).encode("utf-8")
        return self.status, [("content-type", "application/json")], data


class BodyError(HTTPError, ValueError):
    """A request body the handler cannot parse: the caller's 400.

    Also a ValueError, so handlers written to catch ValueError from `req.json()` still work.
    """

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


@dataclass(slots=True)
class Response:
    """An explicit answer from a handler: status, body and headers."""

    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] | None = b""
    headers: Mapping[str, str] | None = None


def to_http(result: object) -> tuple[int, list[tuple[str, str]], bytes]:
    """Turn what a handler returned into status, headers and body bytes.

    bytes and str are sent as they are, dicts and lists as JSON, `Response` as given.
    """
    if isinstance(result, Response):
        status, headers, body = _encode_body(result.body)
        if result.headers:
            given = {k.lower() for k in result.headers}
            headers = [h for h in headers if h[0] not in given]
            headers.extend((k, str(v)) for k, v in result.headers.items())
        return result.status, headers, body
    status, headers, body = _encode_body(result)
    return status, headers, body


def _encode_body(body: object) -> tuple[int, list[tuple[str, str]], bytes]:
    if body is None:
        return 200, [], b""
    if isinstance(body, bytes | bytearray | memoryview):
        return 200, [("content-type", "application/octet-stream")], bytes(body)
    if isinstance(body, str):
        return 200, [("content-type", "text/plain; charset=utf-8")], body.encode("utf-8")
    if isinstance(body, dict | list | int | float | bool):
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return 200, [("content-type", "application/json")], data
    raise TypeError(
        f"handler returned {type(body).__name__}; return bytes, str, a dict or list "
        "(sent as JSON), None, or nuvem.Response(status, body, headers)"
    )
