"""What the last `nuvem apply` left: a digest of each function's spec, and when.

One setting in the records (`stack.applied`, JSON). `nuvem plan` compares it with what runs
and with the file: a function whose running spec has another digest now was changed since
(through the API or another deploy); a machine failure recorded after `event` happened
since.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from nuvem.stores.records import RecordStore

APPLIED_SETTING = "stack.applied"


@dataclass(frozen=True, slots=True)
class AppliedStack:
    functions: dict[str, str] = field(default_factory=dict)  # name -> stack_plan.spec_digest
    at: float | None = None  # epoch seconds of the last apply; None: never applied
    event: int = 0  # the newest event id at that apply: later events happened since


def load_applied(records: RecordStore) -> AppliedStack:
    text = records.get_setting(APPLIED_SETTING)
    if not text:
        return AppliedStack()
    data = json.loads(text)
    return AppliedStack(
        functions={str(k): str(v) for k, v in data.get("functions", {}).items()},
        at=data.get("at"),
        event=int(data.get("event", 0)),
    )


def save_applied(records: RecordStore, applied: AppliedStack) -> None:
    data = {"functions": applied.functions, "at": applied.at, "event": applied.event}
    records.set_setting(APPLIED_SETTING, json.dumps(data, sort_keys=True))
