"""Scaling under /system: the autoscaler's view of every function, and the Alertmanager
webhook that turns alerts into scale requests (as OpenFaaS does). Admin only."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from nuvem.control.autoscaler import Load, alert_target
from nuvem.control.deployment import Deployment
from nuvem.gateway.system_api import Admin

router = APIRouter(prefix="/system", tags=["scaling"])


class LoadInfo(BaseModel):
    inflight: float = Field(description="calls running, averaged")
    queued: float = Field(description="calls waiting for a slot, averaged")
    rps: float = Field(description="calls arriving per second")
    latency_ms: float = Field(description="mean service time of completed calls")

    @classmethod
    def of(cls, load: Load) -> LoadInfo:
        return cls(
            inflight=round(load.inflight, 3),
            queued=round(load.queued, 3),
            rps=round(load.rps, 3),
            latency_ms=round(load.latency * 1000, 3),
        )


class FunctionScaling(BaseModel):
    name: str
    mode: str | None = Field(description="concurrency | rps | queue; null: autoscaling off")
    min: int
    max: int
    desired: int
    ready: int
    starting: int
    inflight: int = Field(description="calls running now")
    queued: int = Field(description="calls waiting now")
    load: LoadInfo = Field(description="over the panic window (the last few seconds)")
    stable: LoadInfo = Field(description="over the stable window")
    decision: str | None = Field(description="the autoscaler's latest reasoning")
    changed_s_ago: float = Field(description="seconds since the desired count last changed")

    @classmethod
    def of(cls, deployment: Deployment, now: float) -> FunctionScaling:
        scaling = deployment.spec.scaling
        return cls(
            name=deployment.name,
            mode=scaling.mode,
            min=scaling.min,
            max=scaling.max,
            desired=deployment.desired,
            ready=len(deployment.ready()),
            starting=deployment.starting,
            inflight=deployment.router.busy,
            queued=deployment.router.queued,
            load=LoadInfo.of(deployment.load.average(scaling.panic_window_s)),
            stable=LoadInfo.of(deployment.load.average(scaling.stable_window_s)),
            decision=deployment.decision.reason if deployment.decision else None,
            changed_s_ago=round(max(0.0, now - deployment.changed_at), 3),
        )


@router.get("/scaling", response_model=list[FunctionScaling])
def scaling(platform: Admin) -> list[FunctionScaling]:
    """Replicas, load and the latest autoscaling decision of every function."""
    controller = platform.controller
    now = controller.clock()
    deployments = sorted(controller.deployments.values(), key=lambda d: d.name)
    return [FunctionScaling.of(d, now) for d in deployments]


class Alert(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)


class AlertWebhook(BaseModel):
    """Alertmanager's webhook body (version 4); fields we do not use are accepted."""

    model_config = ConfigDict(extra="allow")
    alerts: list[Alert] = Field(min_length=1)


class AlertOutcome(BaseModel):
    function: str | None
    alertname: str | None
    status: str
    scaled_from: int | None = None
    scaled_to: int | None = None
    message: str


class AlertResult(BaseModel):
    scaled: list[AlertOutcome]
    skipped: list[AlertOutcome]


def _function_name(labels: dict[str, Any]) -> str | None:
    name = labels.get("function_name")
    if not name:
        return None
    # OpenFaaS names carry their namespace (`figlet.openfaas-fn`); nuvem names have no dots.
    return str(name).split(".", 1)[0]


@router.post("/alert", response_model=AlertResult)
def alert(platform: Admin, body: AlertWebhook) -> AlertResult:
    """Scale on Alertmanager alerts: a firing alert for `labels.function_name` adds a step of
    replicas (a fifth of max, at least one), a resolved one returns the function to min.

    Point an Alertmanager webhook receiver at this URL with the admin's basic auth. Alerts
    that name no deployed function are reported under `skipped`, not failed, so
    Alertmanager does not retry them for ever.
    """
    controller = platform.controller
    scaled: list[AlertOutcome] = []
    skipped: list[AlertOutcome] = []
    for item in body.alerts:
        name = _function_name(item.labels)
        alertname = item.labels.get("alertname")
        if name is None:
            skipped.append(
                AlertOutcome(
                    function=None,
                    alertname=alertname,
                    status=item.status,
                    message="the alert has no labels.function_name; add it to the alert "
                    "rule's labels (e.g. from the metric's function_name label)",
                )
            )
            continue
        deployment = controller.deployments.get(name)
        if deployment is None:
            known = ", ".join(sorted(controller.deployments)) or "none"
            skipped.append(
                AlertOutcome(
                    function=name,
                    alertname=alertname,
                    status=item.status,
                    message=f"function {name!r} is not deployed (deployed: {known})",
                )
            )
            continue
        previous = deployment.desired
        decision = alert_target(previous, deployment.spec.scaling, item.status == "firing")
        if decision.desired != previous:
            reason = f"{decision.reason} ({alertname or 'unnamed alert'})"
            controller.set_desired(deployment, decision.desired, "alert", reason)
        scaled.append(
            AlertOutcome(
                function=name,
                alertname=alertname,
                status=item.status,
                scaled_from=previous,
                scaled_to=decision.desired,
                message=decision.reason,
            )
        )
    return AlertResult(scaled=scaled, skipped=skipped)
