"""OpenAPI entries for the routes served outside FastAPI (the function hot path)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from nuvem.gateway.async_openapi import async_paths
from nuvem.gateway.model_openapi import ERROR_SCHEMA, model_paths

_METHODS = ("get", "post", "put", "patch", "delete")

_RESPONSES = {
    "200": {"description": "the function's answer, as it returned it"},
    "400": {
        "description": "bad request, or a body the handler's req.json()/req.text() cannot parse"
    },
    "4XX": {"description": "the handler refused the call on purpose (nuvem.HTTPError, Response)"},
    "401": {"description": "missing or wrong API key"},
    "403": {"description": "the API key may not invoke this function"},
    "404": {"description": "no such function"},
    "413": {"description": "body too large"},
    "429": {"description": "the function's queue is full; see Retry-After"},
    "500": {"description": "the handler raised; the error names the exception"},
    "502": {"description": "the replica died mid-call and the function is not idempotent"},
    "503": {"description": "the function cannot start (setup failed)"},
    "504": {"description": "the deadline (the function's timeout) passed"},
}


def _operation(method: str, with_path: bool) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    if with_path:
        parameters.append(
            {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
        )
    operation: dict[str, Any] = {
        "tags": ["functions"],
        "summary": "Invoke a function synchronously",
        "description": "Headers, the extra path and the query reach the handler. Answers "
        "carry X-Call-Id, X-Start-Time (unix ns) and X-Duration-Seconds.",
        "operationId": f"invoke_{method}{'_path' if with_path else ''}",
        "parameters": parameters,
        "security": [{"bearer": []}, {"apiKey": []}],
        "responses": _RESPONSES,
    }
    if method in ("post", "put", "patch"):
        operation["requestBody"] = {
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}
        }
    return operation


def add_function_routes(api: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if api.openapi_schema is not None:
            return api.openapi_schema
        schema = get_openapi(
            title=api.title, version=api.version, description=api.description, routes=api.routes
        )
        paths = schema.setdefault("paths", {})
        for template, with_path in (("/function/{name}", False), ("/function/{name}/{path}", True)):
            paths[template] = {m: _operation(m, with_path) for m in _METHODS}
        paths.update(async_paths())
        paths.update(model_paths())
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "admin": {"type": "http", "scheme": "basic"},
        }
        api.openapi_schema = schema
        return schema

    api.openapi = openapi  # type: ignore[method-assign]
