"""The model of a whole stack file."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from nuvem.stack.cluster import Cluster
from nuvem.stack.container import EngineName
from nuvem.stack.function import FunctionSpec, Strict
from nuvem.stack.metrics import MetricsSpec
from nuvem.stack.pools import PoolSpec
from nuvem.stack.registry import RegistrySpec
from nuvem.stack.store_urls import Stores


class Stack(Strict):
    version: str = Field(default="1", description="stack file format version")
    functions: dict[str, FunctionSpec] = Field(default_factory=dict)
    stores: Stores = Field(default_factory=Stores, description="job queue and records")
    cluster: Cluster = Field(
        default_factory=Cluster, description="where replicas run: engine local or ray"
    )
    pools: dict[str, PoolSpec] = Field(
        default_factory=dict, description="machines added and removed on demand (engine: ray)"
    )
    metrics: MetricsSpec = Field(
        default_factory=MetricsSpec, description="where metrics are pushed: influxdb"
    )
    container_engine: EngineName = Field(
        default="auto",
        description="what runs image functions: auto (Docker if its API answers, else "
        "podman), podman or docker",
    )
    registry: RegistrySpec | None = Field(
        default=None,
        description="where built images are pushed and replicas pull them from: host:port, "
        "or {address, tls_verify, auth_file}",
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        # YAML reads `version: 1` as an int; that is what everyone writes.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("functions"), dict):
            functions = {}
            for name, body in data["functions"].items():
                if isinstance(body, dict):
                    given = body.get("name", body.get("service", name))
                    if given != name:
                        raise ValueError(
                            f"function {name!r} sets name {given!r}; the key is the name, "
                            "remove `name:` or rename the key"
                        )
                    body = {**body, "name": name}
                functions[name] = body
            data = {**data, "functions": functions}
        if isinstance(data, dict) and isinstance(data.get("pools"), dict):
            data = {
                **data,
                "pools": {
                    str(name): _named(name, body, "pool") for name, body in data["pools"].items()
                },
            }
        return data

    @model_validator(mode="after")
    def _pools_need_ray(self) -> Stack:
        if self.pools and self.cluster.engine != "ray":
            raise ValueError(
                "pools add machines as nodes of a Ray cluster; set `cluster: {engine: ray}` "
                "or remove `pools:`"
            )
        return self


def _named(name: object, body: Any, kind: str) -> Any:
    """A pool's body with its key as its name (the key is the name)."""
    if not isinstance(body, dict):
        return body
    given = body.get("name", name)
    if given != name:
        raise ValueError(
            f"{kind} {name!r} sets name {given!r}; the key is the name, remove `name:` or "
            "rename the key"
        )
    return {**body, "name": str(name)}
