"""The /system API: functions, scaling, keys, logs, events, info. Admin only."""

from __future__ import annotations

import json
import platform as host
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

import nuvem
from nuvem.errors import BadRequest, Conflict, NotFound
from nuvem.gateway.model_index import check_version_free
from nuvem.gateway.schemas import (
    DeleteRequest,
    EventInfo,
    FunctionStatus,
    Info,
    KeyCreate,
    KeyCreated,
    KeyInfo,
    KeyLimits,
    ScaleRequest,
)
from nuvem.gateway.services import Services
from nuvem.gateway.ui.session import signed_in
from nuvem.runtime.devices import gpu_count
from nuvem.stack.function import FunctionSpec
from nuvem.stores.records import ApiKeyRecord


def platform_of(request: Request) -> Services:
    found: Services = request.app.state.platform
    return found


def admin(request: Request) -> Services:
    """The admin: by basic auth, or by the dashboard's session cookie (+ CSRF token)."""
    platform = platform_of(request)
    if signed_in(request) is None:
        platform.auth.check_admin(request.headers.get("authorization"))
    return platform


Admin = Annotated[Services, Depends(admin)]
router = APIRouter(prefix="/system", tags=["system"])


def validate_placement(spec: FunctionSpec, engine: str) -> None:
    root = Path(spec.root)
    if not root.is_absolute() or not root.is_dir():
        raise BadRequest(
            f"function {spec.name!r}: root {spec.root!r} is not an absolute folder on the "
            "gateway's machine",
            "deploy with `nuvem deploy -f nuvem.yaml`, which sends the stack file's folder",
        )
    missing = spec.model.missing_file() if spec.model is not None else None
    if missing is not None:
        raise BadRequest(
            f"function {spec.name!r}: model.{missing[0]} {missing[1]!r} is not a readable file "
            "on the gateway's machine",
            "give an absolute path there (`nuvem deploy` resolves paths against the stack "
            "file's folder), or an https URL for the weights",
        )
    available = gpu_count()
    # On a cluster a replica that fits no node waits, pending, with the reason.
    if engine == "local" and spec.resources.gpu > available:
        raise BadRequest(
            f"function {spec.name!r} needs {spec.resources.gpu:g} GPU(s) and this machine has "
            f"{available}",
            "set resources.gpu to 0, or add a node with GPUs",
        )


@router.get("/functions", response_model=list[FunctionStatus])
def list_functions(platform: Admin) -> list[FunctionStatus]:
    deployments = platform.controller.deployments.values()
    return [
        FunctionStatus.of(d, platform.registry) for d in sorted(deployments, key=lambda d: d.name)
    ]


@router.post("/functions", status_code=202, response_model=FunctionStatus)
def create_function(platform: Admin, spec: FunctionSpec) -> FunctionStatus:
    """Deploy a new function (409 when it exists: update it with PUT)."""
    if spec.name in platform.controller.deployments:
        raise Conflict(
            f"function {spec.name!r} already exists", "update it with PUT /system/functions"
        )
    validate_placement(spec, platform.engine.name)
    check_version_free(spec, platform.controller.deployments)
    return FunctionStatus.of(platform.controller.deploy(spec), platform.registry)


@router.put("/functions", status_code=202, response_model=FunctionStatus)
def update_function(platform: Admin, spec: FunctionSpec) -> FunctionStatus:
    """Update a deployed function; replicas roll over to the new spec without downtime."""
    platform.controller.get(spec.name)
    validate_placement(spec, platform.engine.name)
    check_version_free(spec, platform.controller.deployments)
    return FunctionStatus.of(platform.controller.deploy(spec), platform.registry)


@router.delete("/functions", status_code=202, response_class=Response)
async def delete_function(platform: Admin, body: DeleteRequest) -> Response:
    await platform.controller.remove(body.functionName)
    return Response(status_code=202)


@router.get("/function/{name}", response_model=FunctionStatus)
def get_function(platform: Admin, name: str) -> FunctionStatus:
    return FunctionStatus.of(platform.controller.get(name), platform.registry)


@router.delete("/function/{name}", status_code=202, response_class=Response)
async def delete_function_by_name(platform: Admin, name: str) -> Response:
    await platform.controller.remove(name)
    return Response(status_code=202)


@router.post("/scale-function/{name}", status_code=202, response_model=FunctionStatus)
def scale_function(platform: Admin, name: str, body: ScaleRequest) -> FunctionStatus:
    if body.serviceName not in (None, name):
        raise BadRequest(
            f"serviceName {body.serviceName!r} does not match the path's {name!r}",
            "omit serviceName or make them equal",
        )
    return FunctionStatus.of(platform.controller.scale(name, body.replicas), platform.registry)


@router.get("/info", response_model=Info)
def info(platform: Admin) -> Info:
    return Info(
        provider={"provider": "nuvem", "orchestration": "local-processes", "version": {}},
        version={"release": nuvem.__version__, "sha": "", "commit_message": ""},
        arch=host.machine(),
    )


@router.get("/events", response_model=list[EventInfo])
def events(
    platform: Admin,
    function: str | None = None,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[EventInfo]:
    found = platform.records.list_events(function, after, limit)
    return [
        EventInfo(
            id=e.id, time=e.time, kind=e.kind, function=e.function, message=e.message, data=e.data
        )
        for e in found
    ]


MAX_LOG_FUNCTIONS = 100


@router.get("/logs", response_class=StreamingResponse)
def logs(
    platform: Admin,
    name: Annotated[list[str], Query(description="a function; repeat for several")],
    tail: Annotated[int | None, Query(ge=0, description="the last N lines of each")] = None,
    since: Annotated[float | None, Query(description="unix time in seconds")] = None,
    follow: bool = False,
) -> StreamingResponse:
    """Log lines of functions' replicas as NDJSON, merged in time order; each line names its
    function. `follow` streams new ones of every function named as they come."""
    names = list(dict.fromkeys(name))  # each once, in the order asked
    if len(names) > MAX_LOG_FUNCTIONS:
        raise BadRequest(
            f"{len(names)} functions asked for at once",
            f"ask for at most {MAX_LOG_FUNCTIONS} in one request",
        )
    for each in names:
        platform.controller.get(each)
    book = platform.logbook

    async def lines() -> AsyncIterator[bytes]:
        for line in book.tail_many(names, tail, since):
            yield json.dumps(line.as_dict()).encode() + b"\n"
        if follow:
            async for line in book.follow(*names):
                yield json.dumps(line.as_dict()).encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _key_info(record: ApiKeyRecord) -> KeyInfo:
    return KeyInfo(
        id=record.id,
        name=record.name,
        functions=list(record.functions) if record.functions is not None else None,
        created_at=record.created_at,
        revoked_at=record.revoked_at,
        rate=record.rate,
        burst=record.burst,
    )


@router.post("/keys", status_code=201, response_model=KeyCreated)
def create_key(platform: Admin, body: Annotated[KeyCreate, Body()]) -> KeyCreated:
    functions = tuple(body.functions) if body.functions is not None else None
    record, full = platform.auth.create_key(body.name, functions, body.rate, body.burst)
    return KeyCreated(key=full, **_key_info(record).model_dump())


@router.put("/keys/{key_id}/limits", response_model=KeyInfo)
def limit_key(platform: Admin, key_id: str, body: Annotated[KeyLimits, Body()]) -> KeyInfo:
    """Set the key's own rate limit; `{"rate": null}` puts it back on the default."""
    return _key_info(platform.auth.limit_key(key_id, body.rate, body.burst))


@router.get("/keys", response_model=list[KeyInfo])
def list_keys(platform: Admin) -> list[KeyInfo]:
    return [_key_info(k) for k in platform.records.list_keys()]


@router.delete("/keys/{key_id}", status_code=204, response_class=Response)
def revoke_key(platform: Admin, key_id: str) -> Response:
    if not platform.auth.revoke_key(key_id):
        raise NotFound(f"API key {key_id!r} does not exist", "see the keys with nuvem keys ls")
    return Response(status_code=204)


@router.post("/shutdown", status_code=202, response_class=Response)
def shutdown(platform: Admin) -> Response:
    """Stop the platform: calls in flight finish, replicas drain, then the gateway exits."""
    platform.request_shutdown()
    return Response(status_code=202)
