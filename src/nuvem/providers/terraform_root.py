"""The root module nuvem writes for a pool, and the variables it passes to it. Pure.

The root module (`main.tf.json`) only declares the contract's variables and the pool's
own, calls the pool's module with them and passes its `nodes` output on. The values go
through the environment (`TF_VAR_*`), never into a file of nuvem's: `cluster` carries the
token. Terraform parses such a value as HCL when its variable has a complex type and as a
plain string otherwise, so every variable is declared with the type of its value.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from nuvem.providers.provider import JoinInfo, NodeRequest
from nuvem.stack.pools import PoolSpec

PACKAGE = Path(__file__).parent
MODULES = PACKAGE / "modules"
PLAYBOOK = PACKAGE / "bootstrap" / "node.yml"
CLOUD_INIT = PACKAGE / "bootstrap" / "cloud-init.yaml.tftpl"
MODULE_CALL = "pool"  # module.pool in the root module

NODES_TYPE = (
    "map(object({index = number, cpus = number, memory_mb = number, gpus = number, "
    "labels = map(string)}))"
)
CLUSTER_TYPE = "object({address = string, token = string, token_file = string})"
BOOTSTRAP_TYPE = (
    "object({playbook = string, cloud_init = string, nuvem_package = string, python = string})"
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
# HCL string escapes are JSON's but for \b, \f and \/; and ${ and %{ start templates.
# Matched escape by escape, so an escaped backslash before a b is left alone.
_HCL_ESCAPES = {"\\b": "\\u0008", "\\f": "\\u000c", "${": "$${", "%{": "%%{"}
_HCL_ESCAPE = re.compile(r"\\.|\$\{|%\{")


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """What a module needs to configure a new machine (the contract's `bootstrap`)."""

    nuvem_package: str  # the pip requirement that installs nuvem on a new machine
    python: str  # the Python that runs nuvem here (the local module's nodes use it)
    playbook: Path = PLAYBOOK
    cloud_init: Path = CLOUD_INIT

    def value(self) -> dict[str, str]:
        return {
            "playbook": str(self.playbook),
            "cloud_init": str(self.cloud_init),
            "nuvem_package": self.nuvem_package,
            "python": self.python,
        }


def default_package() -> str:
    """The requirement for the nuvem that runs here, with the extras a node needs."""
    try:
        version = metadata.version("nuvem")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "nuvem[ray,pools]"
    return f"nuvem[ray,pools]=={version}"


def module_path(pool: PoolSpec) -> Path:
    """The folder of the pool's module: a built-in one, or the user's own (absolute)."""
    return MODULES / pool.module if pool.built_in else Path(pool.module)


def variables(
    pool: PoolSpec,
    nodes: Mapping[str, NodeRequest],
    join: JoinInfo,
    bootstrap: Bootstrap,
    machines_dir: Path,
) -> dict[str, Any]:
    """Every variable the root module gets, by name: the contract's and the pool's."""
    values: dict[str, Any] = {
        "pool": pool.name,
        "nodes": {name: node_value(request) for name, request in nodes.items()},
        "cluster": {"address": join.address, "token": join.token, "token_file": join.token_file},
        "bootstrap": bootstrap.value(),
    }
    if pool.module == "local":
        values["state_root"] = str(machines_dir)
    values.update(pool.variables)
    return values


def node_value(request: NodeRequest) -> dict[str, Any]:
    return {
        "index": request.index,
        "cpus": request.cpus,
        "memory_mb": request.memory // 2**20,
        "gpus": request.gpus,
        "labels": dict(request.labels),
    }


def root_module(module: Path, work_dir: Path, values: Mapping[str, Any]) -> dict[str, Any]:
    """main.tf.json for the pool: its variables, the call of `module`, the `nodes` output."""
    declared: dict[str, Any] = {}
    for name, value in values.items():
        declared[name] = _declaration(name, value)
    call: dict[str, Any] = {"source": module_source(module, work_dir)}
    call.update({name: f"${{var.{name}}}" for name in values})
    return {
        "terraform": {"required_version": ">= 1.5"},
        "variable": declared,
        "module": {MODULE_CALL: call},
        "output": {"nodes": {"value": f"${{module.{MODULE_CALL}.nodes}}"}},
    }


def module_source(module: Path, work_dir: Path) -> str:
    """A relative path: Terraform reads a `./` or `../` module in place (an absolute one
    would be copied at init, and a change to it missed until the next init)."""
    relative = os.path.relpath(module, work_dir)
    return relative if relative.startswith("../") else f"./{relative}"


def environment(values: Mapping[str, Any]) -> dict[str, str]:
    """The TF_VAR_* variables that carry `values` (None: the variable's default, null)."""
    return {
        f"TF_VAR_{name}": value if isinstance(value, str) else hcl(value)
        for name, value in values.items()
        if value is not None
    }


def _declaration(name: str, value: Any) -> dict[str, Any]:
    if name == "nodes":
        return {"type": NODES_TYPE}
    if name == "cluster":
        return {"type": CLUSTER_TYPE, "sensitive": True}
    if name == "bootstrap":
        return {"type": BOOTSTRAP_TYPE}
    if value is None:
        return {"type": "any", "default": None}
    return {"type": type_of(value)}


def type_of(value: Any) -> str:
    """The Terraform type of a JSON-like value, so its TF_VAR is parsed into that type
    (the module's own variable types convert it further: a tuple to a list, and so on)."""
    if value is None:
        return "any"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return f"tuple([{', '.join(type_of(item) for item in value)}])"
    if isinstance(value, dict):
        if all(isinstance(key, str) and _IDENTIFIER.match(key) for key in value):
            fields = ", ".join(f"{key} = {type_of(item)}" for key, item in value.items())
            return f"object({{{fields}}})"
        kinds = {type_of(item) for item in value.values()}
        return f"map({kinds.pop()})" if len(kinds) == 1 else "any"
    raise TypeError(f"a {type(value).__name__} cannot be a Terraform value: {value!r}")


def hcl(value: Any) -> str:
    """`value` written as an HCL expression (what Terraform parses a TF_VAR_* as)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return _HCL_ESCAPE.sub(
            lambda m: _HCL_ESCAPES.get(m.group(), m.group()), json.dumps(value, ensure_ascii=False)
        )
    if isinstance(value, list | tuple):
        return "[" + ", ".join(hcl(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{hcl(str(k))} = {hcl(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"a {type(value).__name__} cannot be a Terraform value: {value!r}")
