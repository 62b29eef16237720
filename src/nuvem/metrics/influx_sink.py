"""Where the exporter's batches go: the `Sink` seam, and `HttpSink`, InfluxDB's write API.

A write ends one of three ways (`Outcome`): written; refused for good (the batch itself is
bad: retrying cannot help, so it is dropped and counted); or failed for now (InfluxDB down,
overloaded, or misconfigured in a way someone can fix: the batch stays and is tried again
after a back-off).
"""

from __future__ import annotations

import asyncio
import enum
import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from nuvem.errors import SpecError
from nuvem.metrics.line_protocol import Precision
from nuvem.stack.metrics import InfluxSpec

# 1.x names precisions by their unit's first letter; 2.x as the stack file does.
_V1_PRECISION: dict[Precision, str] = {"ns": "n", "us": "u", "ms": "ms", "s": "s"}
# Statuses that say the batch itself is wrong (bad line, field type conflict, too large).
_REFUSED = frozenset({400, 413, 422})
_DETAIL_CHARS = 300
_THREAD_BYTES = 256 * 1024  # bodies larger than this are compressed off the event loop


class Outcome(enum.Enum):
    WRITTEN = "written"  # InfluxDB stored the batch
    REFUSED = "refused"  # the batch is bad: drop it, a retry would be refused again
    FAILED = "failed"  # InfluxDB could not take it now: keep it and retry later


@dataclass(frozen=True, slots=True)
class WriteResult:
    outcome: Outcome
    detail: str = ""  # what InfluxDB or the connection said, for the log


class Sink(Protocol):
    async def write(self, body: bytes) -> WriteResult:
        """Store `body`, lines of line protocol each ending in a newline."""
        ...

    async def close(self) -> None: ...


def write_url(spec: InfluxSpec) -> str:
    """The write endpoint `spec` names: 1.x `/write` for a database, 2.x for a bucket."""
    base = spec.url.rstrip("/")
    if spec.bucket:
        query = httpx.QueryParams(org=spec.org, bucket=spec.bucket, precision=spec.precision)
        return f"{base}/api/v2/write?{query}"
    query = httpx.QueryParams(db=spec.database, precision=_V1_PRECISION[spec.precision])
    return f"{base}/write?{query}"


class HttpSink:
    """Writes gzipped batches with httpx; one connection kept open between rounds."""

    def __init__(
        self,
        spec: InfluxSpec,
        token: str = "",
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,  # tests answer in process
    ) -> None:
        headers = {"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": "gzip"}
        if token:
            # 2.x, and 1.8+ (as `user:password`), read the token from this header; a 1.x
            # server with basic auth takes the user and password in the URL instead.
            headers["Authorization"] = f"Token {token}"
        self.url = write_url(spec)
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout, transport=transport)

    @classmethod
    def open(cls, spec: InfluxSpec) -> HttpSink:
        """A sink for `spec`, its token read from `token_file` when it names one."""
        token = spec.token
        if spec.token_file:
            try:
                token = Path(spec.token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SpecError(
                    f"cannot read the InfluxDB token file {spec.token_file}: {exc.strerror}",
                    hint="write the token into it, or set NUVEM_INFLUXDB_TOKEN instead",
                ) from None
        return cls(spec, token)

    async def write(self, body: bytes) -> WriteResult:
        if len(body) > _THREAD_BYTES:
            compressed = await asyncio.to_thread(_gzip, body)
        else:
            compressed = _gzip(body)
        try:
            response = await self._client.post(self.url, content=compressed)
        except httpx.HTTPError as exc:
            return WriteResult(Outcome.FAILED, f"{type(exc).__name__}: {exc}")
        if response.status_code in (200, 204):
            return WriteResult(Outcome.WRITTEN)
        detail = f"{response.status_code} {response.text[:_DETAIL_CHARS]}".strip()
        if response.status_code in _REFUSED:
            return WriteResult(Outcome.REFUSED, detail)
        # 401/403 (token), 404 (no such database or bucket), 429 and 5xx: fixable or
        # passing, so the points wait in the buffer.
        return WriteResult(Outcome.FAILED, detail)

    async def close(self) -> None:
        await self._client.aclose()


def _gzip(body: bytes) -> bytes:
    # Level 1: most of line protocol's size is repeated names, which any level removes,
    # and the exporter shares the gateway's CPUs.
    return gzip.compress(body, compresslevel=1)
