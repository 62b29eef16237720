"""`RegistrySpec`: the registry a stack's images travel through (`registry:` in the stack).

Images built at deploy (`build:`) are tagged with the registry's address and pushed there;
replicas, on this machine or on a cluster's nodes, pull them when their engine lacks them
(docs/containers.md, "A registry"). Credentials never sit in the stack file: they come
from NUVEM_REGISTRY_USERNAME and NUVEM_REGISTRY_PASSWORD, or from an auth file in the
format podman and Docker write (`auth_file`).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# host[:port], as an image reference's first part: a name with a dot or a port, or an IP.
_ADDRESS = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$")


class RegistrySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(description="host:port of the registry, e.g. 127.0.0.1:5000")
    tls_verify: bool = Field(
        default=True,
        description="false: plain HTTP or an unverified certificate (a loopback or "
        "private-network registry)",
    )
    auth_file: str | None = Field(
        default=None,
        description="credentials in podman's auth.json format (`podman login --authfile`); "
        "else NUVEM_REGISTRY_USERNAME and NUVEM_REGISTRY_PASSWORD, else none",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `registry: 127.0.0.1:5000` says the address alone.
        return {"address": data} if isinstance(data, str) else data

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _ADDRESS.match(value) or ("." not in value and ":" not in value):
            raise ValueError(
                f"registry address {value!r} is not host:port; write it as an image "
                "reference starts, without a scheme, e.g. 127.0.0.1:5000 or registry.example"
            )
        return value
