"""What Terraform's machine-readable output says, read into nuvem's types. Pure.

`terraform apply|plan|destroy -json` print one JSON message per line (Terraform's
"machine-readable UI", format 1.x): progress hooks, diagnostics and planned changes;
`terraform output -json` prints the root module's outputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nuvem.providers.provider import ChangeKind, MachineInfo, PlannedChange, ProviderProgress

# The messages worth a line of progress: what happens to which resource, and problems.
PROGRESS_TYPES = frozenset(
    {
        "apply_start",
        "apply_complete",
        "apply_errored",
        "provision_progress",
        "provision_errored",
        "diagnostic",
        "change_summary",
    }
)
_KINDS = {
    "create": ChangeKind.CREATE,
    "import": ChangeKind.CREATE,
    "delete": ChangeKind.DELETE,
    "remove": ChangeKind.DELETE,  # forgotten by a `removed` block: no longer nuvem's
    "update": ChangeKind.UPDATE,
    "move": ChangeKind.UPDATE,
    "replace": ChangeKind.REPLACE,
}


@dataclass(frozen=True, slots=True)
class Diagnostic:
    severity: str  # error or warning
    summary: str
    detail: str
    address: str  # the resource it concerns; "" when none

    def __str__(self) -> str:
        where = f" ({self.address})" if self.address else ""
        detail = " ".join(self.detail.split())  # one line, however the provider wrapped it
        return f"{self.summary}{where}: {detail}" if detail else f"{self.summary}{where}"


def parse_line(line: str) -> dict[str, Any] | None:
    """One message, or None for a line that is not one (Terraform prints a few plain
    lines itself, e.g. when it crashes)."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def progress(pool: str, message: Mapping[str, Any]) -> ProviderProgress | None:
    if message.get("type") not in PROGRESS_TYPES:
        return None
    return ProviderProgress(pool, str(message.get("@message", "")), _address(message))


def diagnostic(message: Mapping[str, Any]) -> Diagnostic | None:
    if message.get("type") != "diagnostic":
        return None
    body = message.get("diagnostic") or {}
    return Diagnostic(
        severity=str(body.get("severity", "error")),
        summary=str(body.get("summary", "")),
        detail=str(body.get("detail", "")),
        address=str(body.get("address", "")),
    )


def planned_change(message: Mapping[str, Any]) -> PlannedChange | None:
    """A `planned_change` message as a change; None for others and for no-ops."""
    if message.get("type") != "planned_change":
        return None
    change = message.get("change") or {}
    kind = _KINDS.get(str(change.get("action", "")))
    if kind is None:  # noop, read
        return None
    resource = change.get("resource") or {}
    key = resource.get("resource_key")
    # Pool modules make one machine per key of var.nodes (for_each): a string key is
    # the node's name; anything else (count, a shared resource) concerns no one node.
    node = key if isinstance(key, str) else ""
    return PlannedChange(kind, node, str(resource.get("addr", "")))


def machines(outputs: Mapping[str, Any]) -> dict[str, MachineInfo]:
    """The `nodes` output of `terraform output -json` as machines; {} when there is none
    yet (nothing applied). ValueError when it does not have the contract's shape."""
    if "nodes" not in outputs:
        return {}
    value = outputs["nodes"].get("value") if isinstance(outputs["nodes"], dict) else None
    if not isinstance(value, dict):
        raise ValueError(f"the module's `nodes` output is not a map of nodes: {value!r}")
    found: dict[str, MachineInfo] = {}
    for name, node in value.items():
        if not isinstance(node, dict) or not isinstance(node.get("id"), str):
            raise ValueError(
                f"the module's `nodes` output for {name!r} is not "
                f"{{address = string, id = string}}: {node!r}"
            )
        found[name] = MachineInfo(name, str(node.get("address") or ""), node["id"])
    return found


def errors(found: Iterable[Diagnostic]) -> list[Diagnostic]:
    """The error diagnostics among `found`, each once, in order."""
    seen: dict[tuple[str, str, str], Diagnostic] = {}
    for item in found:
        if item.severity == "error":
            seen.setdefault((item.summary, item.detail, item.address), item)
    return list(seen.values())


def _address(message: Mapping[str, Any]) -> str:
    hook = message.get("hook") or {}
    resource = hook.get("resource") if isinstance(hook, dict) else None
    if isinstance(resource, dict) and resource.get("addr"):
        return str(resource["addr"])
    body = message.get("diagnostic")
    return str(body.get("address", "")) if isinstance(body, dict) else ""
