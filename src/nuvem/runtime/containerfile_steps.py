"""Where a build step sits in its Containerfile: podman prints `STEP 5/6: RUN false` (or
`[2/3] STEP 1/4: ...` in a multi-stage build), and an error that names the file's line
tells the user where to look."""

from __future__ import annotations

import re

_STEP = re.compile(r"^(?:\[(\d+)/\d+\] )?STEP (\d+)/\d+: (.*)$")


def instruction_lines(text: str) -> list[list[int]]:
    """The first line (from 1) of every instruction, stage by stage; the ARGs before the
    first FROM belong to no stage, as podman does not count them as steps."""
    stages: list[list[int]] = []
    continued = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        starts = not continued and bool(line) and not line.startswith("#")
        continued = line.endswith("\\") if (starts or continued) else False
        if not starts:
            continue
        if line.split(None, 1)[0].upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(number)
    return stages


def failed_step(output: list[str]) -> tuple[int, int, str] | None:
    """The last step the build started: (stage from 1, step from 1, its instruction)."""
    for line in reversed(output):
        found = _STEP.match(line.strip())
        if found:
            return int(found.group(1) or 1), int(found.group(2)), found.group(3)
    return None


def step_line(text: str, stage: int, step: int) -> int | None:
    """The Containerfile line of `step` in `stage`, when the file has it."""
    stages = instruction_lines(text)
    if 1 <= stage <= len(stages) and 1 <= step <= len(stages[stage - 1]):
        return stages[stage - 1][step - 1]
    return None
