"""Pieces the hand-written OpenAPI entries share: the hot paths' parameters, the trace
headers the gateway reads, and the credentials that invoke."""

from __future__ import annotations

from typing import Any

# What /function/{name} forwards, as OpenFaaS's gateway does; others answer 405 (app.py).
FUNCTION_METHODS = ("get", "head", "post", "put", "patch", "delete", "options")

INVOKE_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]

# Read by the gateway itself; every other header reaches the handler as sent.
TRACE_HEADERS: list[dict[str, Any]] = [
    {
        "name": "traceparent",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "W3C trace context: the call joins this trace as a span of its own "
        "(an invalid one starts a new trace)",
    },
    {
        "name": "tracestate",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "W3C trace state, passed along with traceparent",
    },
]


def path_parameters(with_path: bool) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    if with_path:
        parameters.append(
            {
                "name": "path",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "the rest of the path, slashes included, as the handler's req.path",
            }
        )
    return parameters
