"""The `cluster:` block of a stack file: where replicas run (this machine, or a Ray cluster).

`engine: local` (the default) keeps every replica on this machine. `engine: ray` starts a
Ray head beside the gateway, which other machines join with `nuvem node join`; with
`address:` the gateway joins a Ray head that runs already and starts none.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from nuvem.stack.function import Bytes, Strict, text_mapping

# Ray refuses a smaller object store (ray_constants.OBJECT_STORE_MINIMUM_MEMORY_BYTES).
MIN_OBJECT_STORE = 75 * 1024 * 1024
DEFAULT_OBJECT_STORE = 256 * 1024 * 1024
DEFAULT_GCS_PORT = 6379  # Ray's own default, so `ray` tools find the head where they expect

# Ray's label rules (the Kubernetes ones): a name of at most 63 characters, alphanumeric at
# both ends, with - _ . inside; a key may have a DNS prefix before a slash.
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
_RESERVED_PREFIX = "ray.io/"
_HEAD_ONLY = ("node_ip", "port", "cpus", "gpus", "memory", "object_store_memory", "labels")
_RAY_ONLY = ("address", "token_file", *_HEAD_ONLY)
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})$")


def check_label(key: str, value: str) -> None:
    """Raise ValueError, with the fix, when Ray would refuse the label `key=value`."""
    if key.startswith(_RESERVED_PREFIX):
        raise ValueError(
            f"label {key!r} starts with {_RESERVED_PREFIX!r}, which Ray keeps for its own"
        )
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not all(_LABEL.fullmatch(p) for p in prefix.split("."))):
        raise ValueError(f"label {key!r} has a prefix that is not a DNS name, e.g. example.com/gpu")
    if not _LABEL.fullmatch(name):
        raise ValueError(
            f"label key {key!r} is not a name: at most 63 letters, digits, - _ or ., "
            "starting and ending with a letter or digit"
        )
    if value and not _LABEL.fullmatch(value):
        raise ValueError(
            f"label {key}={value!r} has a value Ray refuses: at most 63 letters, digits, "
            "- _ or ., starting and ending with a letter or digit"
        )


def parse_label(text: str) -> tuple[str, str]:
    """`key=value` -> (key, value); ValueError with the fix otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"label {text!r} is not key=value, e.g. zone=lab or gpu=a100")
    check_label(key, value)
    return key, value


def check_node_ip(value: str) -> str:
    """The address a Ray node is reached at; ValueError with the fix when Ray cannot use it."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address, e.g. 10.0.0.5") from None
    if str(ip) == "127.0.0.1":
        # Ray swaps 127.0.0.1 for the machine's own address without a word.
        raise ValueError(
            "Ray replaces 127.0.0.1 with this machine's address; leave it out, or use "
            "127.0.0.2 (and up) for several nodes on one machine"
        )
    return str(ip)


def split_address(address: str) -> tuple[str, int]:
    """`HOST:PORT` -> (host, port); ValueError with the fix otherwise."""
    match = _HOST_PORT.match(address)
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise ValueError(
            f"address {address!r} is not HOST:PORT, e.g. 10.0.0.5:6379 (the Ray head's GCS port)"
        )
    return match["host"].strip("[]"), int(match["port"])


class Cluster(Strict):
    """Where replicas run. Every field but `engine` applies to `engine: ray` only."""

    engine: Literal["local", "ray"] = Field(
        default="local", description="local: this machine only; ray: a Ray cluster"
    )
    address: str = Field(
        default="",
        description="HOST:PORT of a Ray head that runs already; empty: start one here",
    )
    token_file: str = Field(
        default="",
        description="the cluster token; default: cluster/token in the state folder (made once)",
    )
    node_ip: str = Field(
        default="", description="the address other machines reach the head at; default: Ray's"
    )
    port: int = Field(
        default=DEFAULT_GCS_PORT, ge=1024, le=65535, description="the head's port nodes join"
    )
    cpus: int | None = Field(
        default=None, ge=0, description="CPUs the head offers to replicas; default: all"
    )
    gpus: int | None = Field(
        default=None, ge=0, description="GPUs the head offers to replicas; default: all found"
    )
    memory: Bytes | None = Field(
        default=None, description="memory the head offers to replicas, e.g. 8Gi; default: all"
    )
    object_store_memory: Bytes = Field(
        default=DEFAULT_OBJECT_STORE,
        description="shared memory for Ray's object store on the head, e.g. 256Mi",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="labels of the head node, e.g. {zone: lab}"
    )

    @field_validator(*_RAY_ONLY)
    @classmethod
    def _needs_ray(cls, value: object, info: ValidationInfo) -> object:
        # Fields validate in order, so `engine` and `address` are known here; a field that
        # is left out is not validated, so only what the file sets is checked.
        if info.data.get("engine") == "local":
            raise ValueError(
                f"{info.field_name} only applies to engine: ray; set `engine: ray` or remove it"
            )
        if info.field_name in _HEAD_ONLY and info.data.get("address"):
            raise ValueError(
                f"{info.field_name} describes a head that nuvem starts, but address "
                f"{info.data['address']!r} joins one that runs already; remove one of them"
            )
        return value

    @field_validator("node_ip")
    @classmethod
    def _node_ip(cls, value: str) -> str:
        return check_node_ip(value) if value else value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value:
            split_address(value)
        return value

    @field_validator("object_store_memory")
    @classmethod
    def _object_store(cls, value: int) -> int:
        if value < MIN_OBJECT_STORE:
            raise ValueError(
                f"object_store_memory {value} bytes is below Ray's minimum of 75Mi; "
                "write e.g. 256Mi"
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
            check_label(key, label)
        return value
