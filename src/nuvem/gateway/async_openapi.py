"""OpenAPI entries for `/async-function/...`, served as raw ASGI outside FastAPI."""

from __future__ import annotations

from typing import Any

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
        "description": "a retried submit with the same key answers the first job",
    },
]

_RESPONSES = {
    "202": {
        "description": "accepted and stored; X-Call-Id is the job id (see /system/jobs/{id})",
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
    "400": {"description": "bad request, e.g. a callback URL that is not allowed"},
    "401": {"description": "missing or wrong API key"},
    "403": {"description": "the API key may not invoke this function"},
    "404": {"description": "no such function"},
    "413": {"description": "body too large"},
}


def async_paths() -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = {}
    for template, with_path in (
        ("/async-function/{name}", False),
        ("/async-function/{name}/{path}", True),
    ):
        parameters: list[dict[str, Any]] = [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
        ]
        if with_path:
            parameters.append(
                {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
            )
        paths[template] = {
            "post": {
                "tags": ["functions"],
                "summary": "Invoke a function asynchronously",
                "description": "Answers 202 at once; the job runs later with retries. Collect "
                "the result with GET /system/jobs/{id}/result or receive it by callback.",
                "operationId": f"invoke_async{'_path' if with_path else ''}",
                "parameters": parameters + _HEADERS,
                "security": [{"bearer": []}, {"apiKey": []}],
                "requestBody": {
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}
                },
                "responses": _RESPONSES,
            }
        }
    return paths
