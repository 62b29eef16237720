"""The `pools:` block of a stack file: groups of machines nuvem adds and removes by itself.

A pool is a Terraform module (built in: local, proxmox, aws; or the path of your own)
that creates one machine per key of its `nodes` variable. Each machine configures itself,
joins the Ray cluster as a node with the pool's labels, and is removed again once it has
been empty for `scale_down_after`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from nuvem.stack.cluster import check_label
from nuvem.stack.function import Bytes, Seconds, Strict, text_mapping

BUILT_IN_MODULES = ("local", "proxmox", "aws")
# Labels nuvem gives every pool node, so a Ray node is matched to the pool node it is
# whatever address it got (a VM on DHCP learns its own only once it runs).
POOL_LABEL = "nuvem.dev/pool"
NODE_LABEL = "nuvem.dev/node"
# A pool's name starts its nodes' names (`cpu-3`), which become Terraform keys, VM names
# and host names: DNS label rules, with room for the `-N` suffix.
_POOL_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
# Variables nuvem passes to every module itself (the module contract, docs/pools.md).
RESERVED_VARIABLES = frozenset({"pool", "nodes", "cluster", "bootstrap"})
MAX_STEP = 10  # nodes a pool may be asked for in one decision


class NodeShape(Strict):
    """What one machine of the pool offers to replicas."""

    cpus: int = Field(default=1, ge=1, le=1024, description="CPUs of each machine")
    memory: Bytes = Field(default=2 * 2**30, description="memory of each machine, e.g. 2Gi")
    gpus: int = Field(default=0, ge=0, le=64, description="GPUs of each machine")
    labels: dict[str, str] = Field(
        default_factory=dict, description="labels the nodes join with, e.g. {pool: cpu}"
    )

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: int) -> int:
        if value < 512 * 2**20:
            raise ValueError(
                f"memory {value} bytes is too little for a node (Ray alone takes about "
                "300Mi); write at least 512Mi, e.g. 2Gi"
            )
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _label_text(cls, value: object) -> object:
        return text_mapping(value)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, label in value.items():
            if key in (POOL_LABEL, NODE_LABEL):
                raise ValueError(f"label {key!r} is set by nuvem itself; remove it")
            check_label(key, label)
        return value


class PoolSpec(Strict):
    """One pool: which module makes its machines, how many, and when to remove them."""

    name: str = Field(default="", description="the pool's key in `pools:`")
    provider: Literal["terraform"] = Field(
        default="terraform", description="what creates the machines (terraform)"
    )
    module: str = Field(
        default="local",
        description="local, proxmox, aws, or the path of your own Terraform module",
    )
    min: int = Field(default=0, ge=0, le=1000, description="machines kept at all times")
    max: int = Field(default=1, ge=0, le=1000, description="machines at most")
    warm: int = Field(
        default=0, ge=0, le=1000, description="machines kept joined and idle, ready at once"
    )
    node: NodeShape = Field(default_factory=NodeShape, description="each machine's shape")
    scale_down_after: Seconds = Field(
        default=120.0, description="an empty machine this long is drained and removed"
    )
    join_timeout: Seconds = Field(
        default=300.0,
        description="a machine not joined this long after it was created counts as failed",
    )
    variables: dict[str, Any] = Field(
        default_factory=dict,
        description="passed to the module as they are: endpoint, template, instance type...",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _POOL_NAME.match(value):
            raise ValueError(
                f"pool name {value!r} must be lowercase letters, digits and -, starting with "
                "a letter, at most 40 characters (it starts its machines' host names)"
            )
        return value

    @field_validator("module")
    @classmethod
    def _module(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(f"module is empty; write one of {', '.join(BUILT_IN_MODULES)}")
        return value

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key in RESERVED_VARIABLES:
                raise ValueError(
                    f"variable {key!r} is passed by nuvem itself (the module contract); remove it"
                )
            if not _VARIABLE.match(key):
                raise ValueError(
                    f"variable {key!r} is not a Terraform name: letters, digits, _ and -, "
                    "starting with a letter or _"
                )
        return value

    @model_validator(mode="after")
    def _bounds(self) -> PoolSpec:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max}); raise max or lower min")
        if self.warm > self.max:
            raise ValueError(
                f"warm ({self.warm}) is above max ({self.max}); at most max machines can wait"
            )
        return self

    @property
    def built_in(self) -> bool:
        return self.module in BUILT_IN_MODULES

    def node_labels(self, node: str) -> dict[str, str]:
        """The labels machine `node` joins with: the pool's own and nuvem's two."""
        return {**self.node.labels, POOL_LABEL: self.name, NODE_LABEL: node}
