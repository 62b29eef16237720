"""What OpenFaaS's gateway adds to a call it forwards to a function's container, so that
an image written for OpenFaaS sees the same here (faas gateway/handlers: the call-id
middleware and `buildUpstreamRequest`):

- `X-Call-Id` (the caller's, or a new one: RequestHeaders.ensure_call_id does that for
  every function) and `X-Start-Time`, the gateway's arrival time in unix nanoseconds;
- `X-Forwarded-Host`, the Host the caller used, and `X-Forwarded-For`, the caller's
  address as `ip:port` (Go's RemoteAddr), each unless the caller sent one;
- `Host` is the container's own address, as a proxied request has it.

of-watchdog in http mode passes these on as headers; its other modes turn each header
into an `Http_*` variable of the process (`Http_X_Call_Id`, `Http_X_Forwarded_For`), with
`Http_Method`, `Http_Path` and `Http_Query` (docs/containers.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def upstream_headers(
    headers: Iterable[tuple[str, str]], scope: Mapping[str, Any], started_wall: float
) -> list[tuple[str, str]]:
    """`headers` (lower-cased names, as forwarded) with OpenFaaS's additions."""
    given = list(headers)
    host = next((value for key, value in given if key == "host"), None)
    sent = [(key, value) for key, value in given if key not in ("host", "x-start-time")]
    names = {key for key, _ in sent}
    if host and "x-forwarded-host" not in names:
        sent.append(("x-forwarded-host", host))
    client = scope.get("client")
    if client and "x-forwarded-for" not in names:
        sent.append(("x-forwarded-for", f"{client[0]}:{client[1]}"))
    sent.append(("x-start-time", str(int(started_wall * 1e9))))
    return sent
