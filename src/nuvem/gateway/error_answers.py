"""The error answers and credentials the OpenAPI document names for each route.

FastAPI documents a route's success and a 422 for a body it cannot validate. The gateway
answers that case 400 with {"error": "..."} (app.py), like every other refusal, and its
admin routes refuse with the statuses of nuvem.errors; the Guard in front (guard.py) can
refuse any request before a route sees it. `document_errors` rewrites the document to say
all of that, so a client reading it (or schemathesis) meets no status it does not list."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string", "description": "the problem and the fix"}},
    "required": ["error"],
}
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


# Before any route: the request's line and headers, and a flood of unauthenticated calls.
FRONT_DOOR = {
    "414": error_response("the URL is longer than NUVEM_MAX_URL"),
    "429": error_response(
        "too many requests: the key's rate limit, the function's full queue, or unauthenticated "
        "requests from this address past NUVEM_UNAUTH_RATE; see Retry-After"
    ),
    "431": error_response("more or larger headers than NUVEM_MAX_HEADERS/_HEADER_BYTES allow"),
}
# Only where a body is read.
WITH_BODY = {
    "408": error_response("the body paused for longer than NUVEM_READ_TIMEOUT"),
    "413": error_response("body too large (NUVEM_MAX_BODY)"),
}
_ADMIN = {
    "400": error_response("invalid request: the error names each field and the fix"),
    "401": error_response("credentials needed: the admin's (basic auth, user admin)"),
    "403": error_response(
        "an API key asking for another function's jobs, or a dashboard session without its "
        "CSRF token"
    ),
    "404": error_response("no such function, job, key, node, pool or bundle"),
    "409": error_response("the request conflicts with the platform's state; the error says how"),
}
_OPEN = {"401": error_response("admin credentials needed (when NUVEM_OPEN_HEALTH/_METRICS is 0)")}
# Where credentials are checked against the records: PostgreSQL restarting (StoreUnreachable).
_RECORDS_DOWN = error_response("the records database does not answer; retry after Retry-After")
ADMIN_SECURITY: list[dict[str, list[str]]] = [{"admin": []}]
# Open by default; admin only when the setting says so: either way is in the document.
_OPEN_SECURITY: list[dict[str, list[str]]] = [{}, {"admin": []}]
_OPEN_PATHS = ("/healthz", "/metrics")
# Jobs are also an API key's own: a key reads the jobs of the functions it may invoke.
_JOBS_SECURITY: list[dict[str, list[str]]] = [{"admin": []}, {"bearer": []}, {"apiKey": []}]
_JOBS = "/system/jobs"


def _security(template: str) -> list[dict[str, list[str]]]:
    if template in _OPEN_PATHS:
        return _OPEN_SECURITY
    return _JOBS_SECURITY if template.startswith(_JOBS) else ADMIN_SECURITY


def document_errors(schema: MutableMapping[str, Any], fastapi_paths: set[str]) -> None:
    """Name every error answer in `schema`: the routes FastAPI documented (`fastapi_paths`)
    get the admin refusals and credentials; every route gets the front door's."""
    for template, item in schema.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            if template in fastapi_paths:
                responses.pop("422", None)
                operation["security"] = _security(template)
                for status, answer in (_OPEN if template in _OPEN_PATHS else _ADMIN).items():
                    responses.setdefault(status, answer)
            extra = {**FRONT_DOOR, **(WITH_BODY if "requestBody" in operation else {})}
            if operation.get("security") and template not in _OPEN_PATHS:
                extra["503"] = _RECORDS_DOWN
            for status, answer in extra.items():
                responses.setdefault(status, answer)
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_VALIDATION:
        schemas.pop(name, None)
    schemas["Error"] = ERROR_SCHEMA
