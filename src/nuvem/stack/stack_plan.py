"""The plan: what `nuvem apply` would change to make the running platform match a stack file.

Pure: `diff(desired, live)` compares the stack file with what runs (`LiveState`, gathered by
the CLI from the gateway) and returns a `StackPlan`: functions added, changed (field by
field) or removed; pools added, changed or removed, with the machine changes the pool's own
provider plans for them; and drift, what changed on the platform since the last apply.

Two records make drift tellable from an edit of the file. The gateway keeps, per function,
the digest of the spec the last apply left (`applied`): a live spec that no longer has that
digest was changed since, through the API or another deploy; a desired spec that no longer
has it was changed in the file. And the pools' machines that failed or were lost (killed by
hand) since the last apply come from the node tier.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nuvem.stack.function import FunctionSpec
from nuvem.stack.pools import PoolSpec
from nuvem.stack.stack import Stack


class Action(enum.Enum):
    ADD = "add"  # in the file, not running
    CHANGE = "change"  # running, but not as the file says
    REMOVE = "remove"  # running, not in the file


class Cause(enum.Enum):
    """Why a function differs from the file."""

    FILE = "file"  # the file changed since the last apply; the platform did not
    PLATFORM = "platform"  # the platform changed since the last apply (API, another deploy)
    BOTH = "both"  # both changed since the last apply
    UNKNOWN = "unknown"  # never applied with `nuvem apply`: no record to tell


class _Missing:
    """The side of a field change where the field is absent."""

    def __repr__(self) -> str:
        return "(absent)"


MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field that differs: its dotted path (`env.MODE`), the running and the file's value."""

    path: str
    old: Any  # MISSING: not set on the platform
    new: Any  # MISSING: not set in the file

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "old": None if self.old is MISSING else self.old,
            "new": None if self.new is MISSING else self.new,
        }


@dataclass(frozen=True, slots=True)
class FunctionChange:
    name: str
    action: Action
    cause: Cause
    fields: tuple[FieldChange, ...] = ()

    @property
    def drift(self) -> bool:
        """The platform changed since the last apply: apply puts the file's version back."""
        return self.cause in (Cause.PLATFORM, Cause.BOTH)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action.value,
            "cause": self.cause.value,
            "drift": self.drift,
            "fields": [f.as_dict() for f in self.fields],
        }


@dataclass(frozen=True, slots=True)
class MachineChange:
    """One machine change in the provider's words (create, delete, replace, update)."""

    node: str  # "" when it concerns no one machine (a resource the module shares)
    kind: str
    resource: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"node": self.node, "kind": self.kind, "resource": self.resource}


@dataclass(frozen=True, slots=True)
class MachineDrift:
    """A machine of a pool that failed or was lost since the last apply."""

    node: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"node": self.node, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class LivePool:
    """One pool as the gateway's node tier sees it, given the file's spec for it.

    `planned`: the provider's plan for the machines the tier would want with the file's
    spec; `underway`: its plan for the machines the tier wants now (what the tier is
    already carrying out by itself). What the file changes is the difference.
    """

    spec: PoolSpec | None  # None: the tier has no such pool (machines may remain)
    planned: Sequence[MachineChange] = ()
    underway: Sequence[MachineChange] = ()
    drift: Sequence[MachineDrift] = ()


@dataclass(frozen=True, slots=True)
class LiveState:
    functions: Mapping[str, FunctionSpec]
    applied: Mapping[str, str] = field(default_factory=dict)  # function -> spec_digest
    pools: Mapping[str, LivePool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PoolChange:
    name: str
    action: Action | None  # None: the spec is as the file says (machines may still change)
    fields: tuple[FieldChange, ...] = ()
    machines: tuple[MachineChange, ...] = ()  # what applying the file makes the provider do
    underway: tuple[MachineChange, ...] = ()  # what the tier does anyway (not a change)
    drift: tuple[MachineDrift, ...] = ()

    @property
    def changes(self) -> bool:
        return self.action is not None or bool(self.machines) or bool(self.drift)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action.value if self.action is not None else None,
            "fields": [f.as_dict() for f in self.fields],
            "machines": [m.as_dict() for m in self.machines],
            "underway": [m.as_dict() for m in self.underway],
            "drift": [d.as_dict() for d in self.drift],
        }


@dataclass(frozen=True, slots=True)
class StackPlan:
    functions: tuple[FunctionChange, ...] = ()
    pools: tuple[PoolChange, ...] = ()

    @property
    def empty(self) -> bool:
        """No changes and no drift: `nuvem plan` exits 0."""
        return not self.functions and not any(p.changes for p in self.pools)

    def count(self, action: Action) -> int:
        functions = sum(1 for f in self.functions if f.action is action)
        return functions + sum(1 for p in self.pools if p.action is action)

    def drifted(self) -> int:
        functions = sum(1 for f in self.functions if f.drift)
        return functions + sum(len(p.drift) for p in self.pools)

    def as_dict(self) -> dict[str, Any]:
        return {
            "changes": not self.empty,
            "add": self.count(Action.ADD),
            "change": self.count(Action.CHANGE),
            "remove": self.count(Action.REMOVE),
            "drift": self.drifted(),
            "functions": [f.as_dict() for f in self.functions],
            "pools": [p.as_dict() for p in self.pools if p.changes or p.underway],
        }


def spec_digest(spec: FunctionSpec) -> str:
    """Changes whenever anything in the spec does (unlike `fingerprint`, which ignores what
    does not restart replicas): what the last apply left, per function."""
    data = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def field_changes(old: Any, new: Any, prefix: str = "") -> list[FieldChange]:
    """The leaves that differ between two JSON values, by dotted path; mappings are
    compared key by key, anything else (lists included) as a whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[FieldChange] = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            found += field_changes(old.get(key, MISSING), new.get(key, MISSING), path)
        return found
    if old is MISSING and isinstance(new, dict):
        return field_changes({}, new, prefix) or [FieldChange(prefix, old, new)]
    if new is MISSING and isinstance(old, dict):
        return field_changes(old, {}, prefix) or [FieldChange(prefix, old, new)]
    if old == new:
        return []
    return [FieldChange(prefix, old, new)]


def diff(desired: Stack, live: LiveState) -> StackPlan:
    """What applying `desired` would change on the platform `live` describes."""
    return StackPlan(_functions(desired, live), _pools(desired, live))


def _functions(desired: Stack, live: LiveState) -> tuple[FunctionChange, ...]:
    changes = []
    for name in sorted(set(desired.functions) | set(live.functions)):
        want, have = desired.functions.get(name), live.functions.get(name)
        applied = live.applied.get(name)
        if want is not None and have is None:
            changes.append(
                FunctionChange(name, Action.ADD, _added(applied, want), _fields(None, want))
            )
        elif want is None and have is not None:
            changes.append(
                FunctionChange(name, Action.REMOVE, _removed(applied, have), _fields(have, None))
            )
        elif want is not None and have is not None:
            fields = _fields(have, want)
            if fields:
                cause = _changed(applied, want, have)
                changes.append(FunctionChange(name, Action.CHANGE, cause, fields))
    return tuple(changes)


def _added(applied: str | None, want: FunctionSpec) -> Cause:
    if applied is None:
        return Cause.FILE  # new in the file
    # The last apply deployed it and it is gone: removed through the API since.
    return Cause.PLATFORM if applied == spec_digest(want) else Cause.BOTH


def _removed(applied: str | None, have: FunctionSpec) -> Cause:
    if applied is None:
        return Cause.UNKNOWN  # the last apply did not deploy it: deployed some other way
    return Cause.FILE if applied == spec_digest(have) else Cause.BOTH


def _changed(applied: str | None, want: FunctionSpec, have: FunctionSpec) -> Cause:
    if applied is None:
        return Cause.UNKNOWN
    file_moved = spec_digest(want) != applied
    platform_moved = spec_digest(have) != applied
    if file_moved and platform_moved:
        return Cause.BOTH
    return Cause.PLATFORM if platform_moved else Cause.FILE


def _fields(
    have: FunctionSpec | PoolSpec | None, want: FunctionSpec | PoolSpec | None
) -> tuple[FieldChange, ...]:
    old = have.model_dump(mode="json") if have is not None else {}
    new = want.model_dump(mode="json") if want is not None else {}
    # The name is the key already shown; repeating it as a field says nothing.
    old.pop("name", None)
    new.pop("name", None)
    return tuple(field_changes(old, new))


def _pools(desired: Stack, live: LiveState) -> tuple[PoolChange, ...]:
    changes = []
    for name in sorted(set(desired.pools) | set(live.pools)):
        want = desired.pools.get(name)
        seen = live.pools.get(name, LivePool(spec=None))
        have = seen.spec
        action: Action | None = None
        if want is not None and have is None:
            action = Action.ADD
        elif want is None and have is not None:
            action = Action.REMOVE
        fields = _fields(have, want)
        if want is not None and have is not None and fields:
            action = Action.CHANGE
        underway = set(seen.underway)
        machines = tuple(m for m in seen.planned if m not in underway)
        changes.append(
            PoolChange(
                name,
                action,
                fields if action is not None else (),
                machines,
                tuple(seen.underway),
                tuple(seen.drift),
            )
        )
    return tuple(changes)
