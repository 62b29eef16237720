"""How records become stored text and back, and the rules every record store applies the
same way: shared by the SQL stores and the in-memory fake, so they answer alike."""

from __future__ import annotations

import json
from typing import Any

from nuvem.errors import BadRequest, NotFound
from nuvem.stack.function import FunctionSpec
from nuvem.stores.records import EventRecord, FunctionRecord

SCHEMA_VERSION = 3
SCHEMA_VERSION_SETTING = "schema_version"


def check_replicas(replicas: int) -> None:
    if replicas < 0:
        raise BadRequest(
            f"replicas must be 0 or more, got {replicas}", hint="use 0 to scale to zero"
        )


def function_not_found(name: str) -> NotFound:
    return NotFound(f"function {name!r} not found", hint="deploy it first, or check the name")


def encode_spec(spec: FunctionSpec) -> str:
    return json.dumps(spec.model_dump(mode="json"))


def function_record(
    spec: str, replicas: int, created_at: float, updated_at: float
) -> FunctionRecord:
    return FunctionRecord(
        spec=FunctionSpec.model_validate(json.loads(spec)),
        replicas=replicas,
        created_at=created_at,
        updated_at=updated_at,
    )


def encode_data(data: dict[str, Any] | None) -> str:
    return json.dumps(data or {})


def event_record(
    event_id: int, at: float, kind: str, function: str | None, message: str, data: str
) -> EventRecord:
    return EventRecord(
        id=event_id, time=at, kind=kind, function=function, message=message, data=json.loads(data)
    )


def encode_functions(functions: tuple[str, ...] | None) -> str | None:
    """An API key's function list as stored: NULL means every function."""
    return None if functions is None else json.dumps(list(functions))


def decode_functions(stored: str | None) -> tuple[str, ...] | None:
    return None if stored is None else tuple(json.loads(stored))
