"""Request and response bodies of the /system API (OpenFaaS-compatible where it has one)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field

from nuvem.cluster.stack_bundle import DIGEST_LABEL, VERSION_LABEL
from nuvem.control.deployment import Deployment
from nuvem.runtime.registry_access import RegistryAccess, replica_image


class ReplicaStatus(BaseModel):
    id: str
    state: str = Field(description="starting | ready | draining | dead")
    node: str = Field(description="where it runs: local, or a cluster node's address")
    pid: int
    inflight: int


class PendingStatus(BaseModel):
    replica: str
    short: str = Field(description="what is missing: cpu, gpu, memory, labels, nodes or busy")
    reason: str


class FunctionStatus(BaseModel):
    name: str
    image: str = Field(
        description="the container image its replicas run (for a function built from source, "
        "the tag built, by the stack registry's name when it has one), or the handler "
        "reference (OpenFaaS clients read `image`)"
    )
    handler: str
    replicas: int = Field(description="desired replicas")
    availableReplicas: int = Field(description="replicas ready to serve")  # noqa: N815
    updatedReplicas: int = Field(  # noqa: N815
        description="ready replicas of the present spec: during a rolling update the new ones, "
        "while the old ones still serve"
    )
    invocationCount: int  # noqa: N815
    status: str = Field(
        description="ready | starting | pending (no node has room yet) | degraded | error | "
        "stopped | idle (autoscaled to zero: a call wakes it)"
    )
    error: str | None = None
    progress: str | None = Field(default=None, description="what starting replicas are doing")
    replicaStates: dict[str, int]  # noqa: N815
    replicaList: list[ReplicaStatus] = Field(  # noqa: N815
        default_factory=list, description="every replica not yet dead, with its node"
    )
    pending: list[PendingStatus] = Field(
        default_factory=list, description="starts no node has room for yet, and why"
    )
    inflight: int
    queued: int
    labels: dict[str, str]
    version: str | None = Field(
        default=None, description="the bundle version it runs; null: deployed from a folder"
    )
    bundle: str | None = Field(default=None, description="sha256 of the bundle it runs from")
    spec: dict[str, Any]

    @classmethod
    def of(cls, deployment: Deployment, registry: RegistryAccess | None) -> FunctionStatus:
        """`registry`: the stack's, under whose name built images run."""
        ready = len(deployment.ready())
        status = function_status(deployment, ready)
        spec = deployment.spec
        return cls(
            name=spec.name,
            image=replica_image(spec, registry) or spec.handler,
            handler=spec.handler,
            replicas=deployment.desired,
            availableReplicas=ready,
            updatedReplicas=len(deployment.current_ready()),
            invocationCount=deployment.invocations,
            status=status,
            error=deployment.last_error,
            progress=deployment.progress if deployment.starting else None,
            replicaStates=deployment.state_counts(),
            replicaList=[
                ReplicaStatus(
                    id=r.id, state=r.state.value, node=r.node, pid=r.pid, inflight=r.inflight
                )
                for r in deployment.replicas
            ],
            pending=[
                PendingStatus(replica=p.replica_id, short=p.short, reason=p.reason)
                for p in deployment.pending
            ],
            inflight=deployment.router.inflight,
            queued=deployment.router.queued,
            labels=spec.labels,
            version=spec.labels.get(VERSION_LABEL),
            bundle=spec.labels.get(DIGEST_LABEL),
            spec=spec.model_dump(mode="json"),
        )


def function_status(deployment: Deployment, ready: int) -> str:
    """One word for a function's state, from its desired and `ready` replicas."""
    if deployment.desired == 0:
        return "idle" if deployment.spec.scaling.mode is not None else "stopped"
    if ready >= deployment.desired:
        return "ready"
    if deployment.last_error is not None:
        return "error" if ready == 0 else "degraded"
    if deployment.pending and ready == 0:
        return "pending"
    return "starting"


class ScaleRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    replicas: int = Field(ge=0)
    serviceName: str | None = None  # noqa: N815


class DeleteRequest(BaseModel):
    functionName: str = Field(validation_alias=AliasChoices("functionName", "name"))  # noqa: N815


def _not_a_bool(value: Any) -> Any:
    # pydantic reads JSON's true as 1 (a bool is an int in Python); JSON Schema does not.
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a number; send a number")
    return value


_NUMBER = BeforeValidator(_not_a_bool)


class KeyLimits(BaseModel):
    """A key's own rate limit; null (or absent when creating) means the gateway's default."""

    model_config = ConfigDict(extra="forbid")

    rate: Annotated[float | None, _NUMBER] = Field(
        default=None, ge=0, le=1e6, description="calls per second on average; 0: no limit"
    )
    burst: Annotated[int | None, _NUMBER] = Field(
        default=None, ge=1, le=1_000_000, description="calls at once (default: about rate)"
    )


class KeyCreate(KeyLimits):
    name: str = Field(default="", max_length=200)
    functions: list[str] | None = Field(
        default=None, description="functions the key may invoke; all when absent"
    )


class KeyInfo(BaseModel):
    id: str
    name: str
    functions: list[str] | None
    created_at: float
    revoked_at: float | None = None
    rate: float | None = None
    burst: int | None = None


class KeyCreated(KeyInfo):
    key: str = Field(description="the full key; shown once, only its hash is stored")


class EventInfo(BaseModel):
    id: int
    time: float
    kind: str
    function: str | None
    message: str
    data: dict[str, Any] = Field(
        default_factory=dict, description="what the event is about, for programs (e.g. causes)"
    )


class Info(BaseModel):
    provider: dict[str, Any]
    version: dict[str, str]
    arch: str
