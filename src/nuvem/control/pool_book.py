"""The node tier's record of every pool machine: its lifecycle, where it is, and why.

Kept as one JSON file in the state folder (`pools/machines.json`), beside the pools'
Terraform state, written whole and atomically on every change: a gateway that restarts
knows which machines it asked for and which it was removing.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from nuvem.control.node_plan import NodeLifecycle
from nuvem.stack.pools import PoolSpec

BOOK_FILE = Path("pools") / "machines.json"


@dataclass(frozen=True, slots=True)
class Machine:
    """One machine of a pool."""

    name: str  # `cpu-3`: the pool's name and the machine's stable ordinal
    pool: str
    state: NodeLifecycle
    reason: str  # why it is in this state, in words
    requested_at: float  # epoch seconds
    changed_at: float  # when the state last changed
    joined_at: float | None = None
    address: str = ""  # where it joined from (or the module's output, before it joined)
    node_id: str = ""  # its Ray node id, once joined
    removing: bool = False  # decided to go: left out of the next provider run

    def to(self, state: NodeLifecycle, reason: str, now: float, **changes: Any) -> Machine:
        return replace(self, state=state, reason=reason, changed_at=now, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Machine:
        return cls(**{**data, "state": NodeLifecycle(data["state"])})


class PoolBook:
    """Every machine nuvem asked a pool for, the removed ones included (the last few)."""

    KEEP_REMOVED = 50  # removed machines remembered, for `nuvem nodes --all`

    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: in memory only (tests)
        self._machines: dict[str, Machine] = {}
        # The spec each pool's machines were made with: a pool taken out of the stack is
        # emptied with the module that made it.
        self._specs: dict[str, PoolSpec] = {}
        if path is not None and path.exists():
            data = json.loads(path.read_text())
            for item in data["machines"]:
                machine = Machine.from_dict(item)
                self._machines[machine.name] = machine
            for name, spec in data["pools"].items():
                self._specs[name] = PoolSpec.model_validate(spec)

    def __iter__(self) -> Iterator[Machine]:
        return iter(list(self._machines.values()))

    def get(self, name: str) -> Machine | None:
        return self._machines.get(name)

    def present(self) -> list[Machine]:
        """The machines not removed."""
        return [m for m in self._machines.values() if m.state is not NodeLifecycle.REMOVED]

    def spec(self, pool: str) -> PoolSpec | None:
        return self._specs.get(pool)

    def remember(self, spec: PoolSpec) -> None:
        if self._specs.get(spec.name) != spec:
            self._specs[spec.name] = spec
            self._save()

    def put(self, machine: Machine) -> None:
        self._machines[machine.name] = machine
        self._trim()
        self._save()

    def _trim(self) -> None:
        removed = sorted(
            (m for m in self._machines.values() if m.state is NodeLifecycle.REMOVED),
            key=lambda m: m.changed_at,
        )
        for machine in removed[: max(0, len(removed) - self.KEEP_REMOVED)]:
            del self._machines[machine.name]

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = json.dumps(
            {
                "machines": [m.as_dict() for m in self._machines.values()],
                "pools": {name: s.model_dump(mode="json") for name, s in self._specs.items()},
            },
            indent=1,
        )
        # Written whole then renamed: a crash mid-write leaves the previous book, not half.
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".machines-")
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
        os.replace(temporary, self.path)
