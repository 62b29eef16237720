"""OpenAPI entries for the routes served outside FastAPI (the function hot path), and the
document as the gateway serves it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from nuvem.gateway.async_openapi import async_paths
from nuvem.gateway.error_answers import document_errors, error_response
from nuvem.gateway.model_openapi import model_paths
from nuvem.gateway.openapi_links import add_links
from nuvem.gateway.openapi_parts import (
    FUNCTION_METHODS,
    INVOKE_SECURITY,
    TRACE_HEADERS,
    path_parameters,
)

_CALL_ID = {
    "name": "X-Call-Id",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "the call's id, answered back and passed to the handler (one is made when "
    "absent)",
}
_ANSWER_HEADERS = {
    "X-Call-Id": {"schema": {"type": "string"}, "description": "the call's id"},
    "traceparent": {"schema": {"type": "string"}, "description": "this call's span"},
    "X-Start-Time": {"schema": {"type": "string"}, "description": "unix time in ns"},
    "X-Duration-Seconds": {"schema": {"type": "string"}, "description": "time in the gateway"},
}


def _answer(description: str) -> dict[str, Any]:
    return {"description": description, "headers": _ANSWER_HEADERS}


_RESPONSES = {
    "200": _answer("the function's answer, as it returned it"),
    "2XX": _answer("the function's answer with the status it chose"),
    "400": error_response(
        "bad request, or a body the handler's req.json()/req.text() cannot parse"
    ),
    "4XX": _answer("the handler refused the call on purpose (nuvem.HTTPError, Response)"),
    "401": error_response("missing or wrong API key"),
    "403": error_response("the API key may not invoke this function"),
    "404": error_response("no such function"),
    "405": error_response("a method the gateway does not forward (Allow lists those it does)"),
    "413": error_response("body too large (NUVEM_MAX_BODY or the function's max_body)"),
    "429": error_response(
        "the function's queue is full or the key's rate is spent; see Retry-After"
    ),
    "500": error_response("the handler raised; the error names the exception"),
    "502": error_response("the replica died mid-call and the function is not idempotent"),
    "503": error_response(
        "the function cannot start (setup failed), or the records database does not answer"
    ),
    "504": error_response("the deadline (the function's timeout) passed"),
}


def _operation(method: str, with_path: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": ["functions"],
        "summary": "Invoke a function synchronously",
        "description": "Headers (but the credentials), the extra path and the query reach the "
        "handler. Answers carry X-Call-Id, traceparent, X-Start-Time (unix ns) and "
        "X-Duration-Seconds.",
        "operationId": f"invoke_{method}{'_path' if with_path else ''}",
        "parameters": [*path_parameters(with_path), _CALL_ID, *TRACE_HEADERS],
        "security": INVOKE_SECURITY,
        "responses": _RESPONSES,
    }
    if method in ("post", "put", "patch", "delete", "options"):
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
        fastapi_paths = set(paths)
        for template, with_path in (("/function/{name}", False), ("/function/{name}/{path}", True)):
            paths[template] = {m: _operation(m, with_path) for m in FUNCTION_METHODS}
        paths.update(async_paths())
        paths.update(model_paths())
        document_errors(schema, fastapi_paths)
        add_links(schema)
        schema["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API key"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "admin": {"type": "http", "scheme": "basic", "description": "user admin"},
        }
        api.openapi_schema = schema
        return schema

    api.openapi = openapi  # type: ignore[method-assign]
