"""OpenAPI entries for `/async-function/...`, served as raw ASGI outside FastAPI."""

from __future__ import annotations

from typing import Any

from nuvem.gateway.error_answers import error_response
from nuvem.gateway.openapi_parts import INVOKE_SECURITY, TRACE_HEADERS, path_parameters

_HEADERS = [
    {
        "name": "X-Callback-Url",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "format": "uri"},
        "description": "POST the result here when the job ends, with X-Call-Id, "
        "X-Function-Status, X-Duration-Seconds, X-Function-Name, X-Retry and X-Retry-Max",
    },
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "maxLength": 200},
        "description": "a retried submit with the same key answers the first job "
        "(Idempotent-Replayed: true)",
    },
    *TRACE_HEADERS,
]

_RESPONSES = {
    "202": {
        "description": "accepted and stored; X-Call-Id is the job id (see /system/jobs/{id})",
        "headers": {
            "X-Call-Id": {"schema": {"type": "string"}, "description": "the job's id"},
            "Location": {"schema": {"type": "string"}, "description": "/system/jobs/{id}"},
            "Idempotent-Replayed": {
                "schema": {"type": "string", "enum": ["true"]},
                "description": "present when an earlier submit with this key is answered",
            },
            "traceparent": {"schema": {"type": "string"}, "description": "the job's trace"},
        },
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "function": {"type": "string"},
                        "state": {"type": "string"},
                    },
                }
            }
        },
    },
    "400": error_response("bad request, e.g. a callback URL that is not allowed"),
    "401": error_response("missing or wrong API key"),
    "403": error_response("the API key may not invoke this function"),
    "404": error_response("no such function"),
    "405": error_response("GET, HEAD and TRACE submit no job (Allow names the methods)"),
    "413": error_response("body too large (NUVEM_MAX_BODY or the function's max_body)"),
}


# The methods a job can carry to its handler (`nuvem jobs submit -X`): the handler sees the
# method, as in a sync call. A safe method must not store work, so GET and HEAD submit nothing.
ASYNC_METHODS = ("post", "put", "patch", "delete")


def async_paths() -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = {}
    for template, with_path in (
        ("/async-function/{name}", False),
        ("/async-function/{name}/{path}", True),
    ):
        parameters = path_parameters(with_path)
        paths[template] = {
            method: {
                "tags": ["functions"],
                "summary": "Invoke a function asynchronously",
                "description": "Answers 202 at once; the job runs later with retries, and its "
                "handler sees this method. Collect the result with GET /system/jobs/{id}/result "
                "or receive it by callback.",
                "operationId": f"invoke_async{'_path' if with_path else ''}"
                + ("" if method == "post" else f"_{method}"),
                "parameters": parameters + _HEADERS,
                "security": INVOKE_SECURITY,
                "requestBody": {
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}
                },
                "responses": _RESPONSES,
            }
            for method in ASYNC_METHODS
        }
    return paths
