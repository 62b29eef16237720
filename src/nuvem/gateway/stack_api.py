"""`/system/stack`: what `nuvem plan` needs to tell drift from an edit of the file, and
where `nuvem apply` records what it left."""

from __future__ import annotations

import time

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from nuvem.errors import Conflict
from nuvem.gateway.system_api import Admin
from nuvem.stack.stack_plan import spec_digest
from nuvem.stores.applied_stack import AppliedStack, load_applied, save_applied

router = APIRouter(prefix="/system", tags=["stack"])


class AppliedInfo(BaseModel):
    functions: dict[str, str] = Field(
        description="each function the last apply deployed, with the digest of its spec"
    )
    at: float | None = Field(description="when the last apply finished; null: never")
    event: int = Field(description="the newest event id then; later events happened since")


class StackState(BaseModel):
    engine: str = Field(description="where replicas run: local or ray")
    pools: bool = Field(description="the gateway runs a node tier: PUT /system/pools works")
    applied: AppliedInfo


class AppliedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    functions: dict[str, str] = Field(
        description="each function of the stack file with the spec digest apply deployed; "
        "{} after a destroy"
    )


def _info(applied: AppliedStack) -> AppliedInfo:
    return AppliedInfo(functions=applied.functions, at=applied.at, event=applied.event)


@router.get("/stack", response_model=StackState)
def stack_state(platform: Admin) -> StackState:
    """The engine, whether pools can be set, and what the last `nuvem apply` left."""
    return StackState(
        engine=platform.engine.name,
        pools=platform.controller.node_tier is not None,
        applied=_info(load_applied(platform.records)),
    )


@router.put("/stack/applied", response_model=AppliedInfo)
def record_applied(platform: Admin, body: AppliedRequest) -> AppliedInfo:
    """Record what an apply left: 409 when a function does not run with the spec the apply
    deployed (someone changed it meanwhile), so the record never hides a change."""
    for name, digest in sorted(body.functions.items()):
        running = spec_digest(platform.controller.get(name).spec)
        if running != digest:
            raise Conflict(
                f"function {name!r} changed while the apply ran (running spec {running}, "
                f"applied {digest})",
                "run `nuvem plan -f nuvem.yaml` to see the change, then apply again",
            )
    newest = platform.records.list_events(None, 0, 1)
    applied = AppliedStack(
        functions=dict(body.functions),
        at=time.time(),
        event=newest[-1].id if newest else 0,
    )
    save_applied(platform.records, applied)
    return _info(applied)
