"""`/system/pools` for the stack file: set the tier's pools, plan them, destroy one.

`GET /system/pools` (the pools and their machines) lives in `nodes_api.py`; these are what
`nuvem plan`, `apply` and `destroy` call.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nuvem.control.node_tier import NodeTier
from nuvem.control.pool_preview import PoolPreview
from nuvem.errors import Conflict
from nuvem.gateway.nodes_api import PoolsStatus
from nuvem.gateway.services import Services
from nuvem.gateway.system_api import Admin
from nuvem.providers.provider import PlannedChange
from nuvem.stack.pools import PoolSpec
from nuvem.stores.applied_stack import load_applied

router = APIRouter(prefix="/system", tags=["system"])
_FAILED = "node_failed"  # the node tier's event for a machine that failed or was lost
_EVENTS_PAGE = 1000


class PoolsRequest(BaseModel):
    """The stack file's `pools:`, each keyed by its name."""

    model_config = ConfigDict(extra="forbid")

    pools: dict[str, PoolSpec] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("pools"), dict):
            pools = {}
            for name, body in data["pools"].items():
                if isinstance(body, dict):
                    given = body.get("name") or name
                    if given != name:
                        raise ValueError(
                            f"pool {name!r} has name {given!r}; the key is the name, make "
                            "them equal"
                        )
                    body = {**body, "name": name}
                pools[name] = body
            data = {**data, "pools": pools}
        return data


class PlannedMachine(BaseModel):
    node: str = Field(description="the machine it concerns; empty: a resource of the pool")
    kind: str = Field(description="create | delete | replace | update")
    resource: str = Field(description="the provider's name for it, e.g. a Terraform address")


class MachineDrift(BaseModel):
    node: str
    reason: str = Field(description="how it failed or was lost")


class PoolPlan(BaseModel):
    name: str
    live: dict[str, Any] | None = Field(description="the pool's spec now; null: not a pool")
    planned: list[PlannedMachine] = Field(
        description="the provider's plan for the machines the tier would want with the spec sent"
    )
    underway: list[PlannedMachine] = Field(
        description="the provider's plan for the machines the tier wants now (it is carrying "
        "that out by itself; not a change of the stack)"
    )
    drift: list[MachineDrift] = Field(
        description="machines that failed or were lost since the last apply"
    )


class PoolsPlan(BaseModel):
    pools: list[PoolPlan]


def _tier(platform: Services) -> NodeTier:
    tier = platform.controller.node_tier
    if tier is not None:
        return tier
    engine = platform.engine.name
    if engine != "ray":
        raise Conflict(
            f"this gateway runs no Ray cluster (engine {engine!r}), so it has no pools",
            "set `cluster: {engine: ray}` in the stack file and restart with "
            "`nuvem up -f nuvem.yaml`, or remove `pools:` from it",
        )
    raise Conflict(
        "this gateway's Ray cluster has no node tier: it was started without pools",
        "add `pools:` to the stack file and restart with `nuvem up -f nuvem.yaml`",
    )


def _machines(changes: list[PlannedChange]) -> list[PlannedMachine]:
    return [PlannedMachine(node=c.node, kind=c.kind.value, resource=c.resource) for c in changes]


def _failed_since(platform: Services) -> dict[str, list[MachineDrift]]:
    """Per pool, the machines the tier saw fail or lose their node since the last apply
    (never applied: among the newest events, which is what an `after` of 0 reads)."""
    after = load_applied(platform.records).event
    found: dict[str, list[MachineDrift]] = {}
    while True:
        page = platform.records.list_events(None, after, _EVENTS_PAGE)
        for event in page:
            pool, node = event.data.get("pool"), event.data.get("node")
            if event.kind == _FAILED and isinstance(pool, str) and isinstance(node, str):
                found.setdefault(pool, []).append(MachineDrift(node=node, reason=event.message))
        if len(page) < _EVENTS_PAGE:
            return found
        after = page[-1].id


def _plan(preview: PoolPreview, failed: list[MachineDrift]) -> PoolPlan:
    drift = [MachineDrift(node=d.node, reason=d.reason) for d in preview.drift]
    seen = {d.node for d in drift}
    # A failure the tier has already dealt with (the machine replaced) is still drift.
    drift += [d for d in failed if d.node not in seen]
    return PoolPlan(
        name=preview.name,
        live=preview.live.model_dump(mode="json") if preview.live is not None else None,
        planned=_machines(preview.planned),
        underway=_machines(preview.underway),
        drift=drift,
    )


@router.put("/pools", response_model=PoolsStatus)
def set_pools(platform: Admin, body: PoolsRequest) -> PoolsStatus:
    """Replace the node tier's pools with the stack file's (`nuvem apply`); the controller
    loop adds and drains machines to match. 409 when the gateway runs no node tier."""
    tier = _tier(platform)
    tier.set_pools(body.pools)
    platform.controller.wake()
    return PoolsStatus.model_validate(tier.status())


@router.post("/pools/plan", response_model=PoolsPlan)
async def plan_pools(platform: Admin, body: PoolsRequest) -> PoolsPlan:
    """What making these the pools would change, in the provider's own words (Terraform's
    plan), and the machines that failed or were lost since the last apply. Changes
    nothing. Without a node tier: no pools, and 409 when some are asked for."""
    tier = platform.controller.node_tier
    if tier is None:
        if body.pools:
            _tier(platform)
        return PoolsPlan(pools=[])
    failed = _failed_since(platform)
    previews = await tier.plan(body.pools)
    return PoolsPlan(pools=[_plan(p, failed.get(p.name, [])) for p in previews])


@router.delete("/pools/{name}", response_model=PoolsStatus)
async def destroy_pool(platform: Admin, name: str) -> PoolsStatus:
    """Drain and remove every machine of the pool (`nuvem destroy`); the pool stops being
    one. 404 when no such pool is known; 502 with the provider's diagnostic when it fails."""
    tier = _tier(platform)
    await tier.destroy(name)
    return PoolsStatus.model_validate(tier.status())
