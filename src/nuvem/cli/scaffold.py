"""`nuvem init`: a stack file and a handler module to start from."""

from __future__ import annotations

import re
from pathlib import Path

from nuvem.cli import ci_workflow
from nuvem.errors import Conflict
from nuvem.stack.loader import load_stack

STACK = """\
# A nuvem stack: `nuvem up -f nuvem.yaml`, then `nuvem deploy -f nuvem.yaml` after changes.
# Functions are named after the project, so two projects on one gateway do not collide.
functions:
  {app}-echo:
    handler: functions:echo        # module:callable, resolved from this file's folder
  {app}-hello:
    handler: functions:hello
    scaling: {{min: 1, max: 4}}     # autoscaled within these bounds (mode: null keeps it manual)
    timeout: 10s
"""

FUNCTIONS = '''\
"""Handlers for nuvem.yaml."""

from nuvem import Request


def echo(req: Request) -> bytes:
    return req.body


def hello(req: Request) -> dict[str, str]:
    return {"message": f"hello, {req.query.get('name', 'world')}"}
'''


def app_name(folder: Path) -> str:
    """The folder's name as the start of a function name (`My_App` -> `my-app`)."""
    name = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower())
    name = re.sub(r"-+", "-", name).lstrip("-0123456789")[:40].strip("-")
    return name or "app"


def init(folder: Path, ci: str | None = None, actions_repository: str = "") -> list[Path]:
    """Write nuvem.yaml and functions.py into `folder`, never over either; with `ci`, also a
    starter CI workflow (for a folder that has a stack file already, only the workflow)."""
    stack_file = folder / "nuvem.yaml"
    if ci is not None:
        ci_workflow.target(folder, ci)  # refused before anything is written
    folder.mkdir(parents=True, exist_ok=True)
    if ci is not None and stack_file.exists():
        return [_workflow(folder, ci, stack_file, actions_repository)]
    stack = STACK.format(app=app_name(folder))
    targets = {stack_file: stack, folder / "functions.py": FUNCTIONS}
    existing = [str(path) for path in targets if path.exists()]
    if existing:
        raise Conflict(
            f"{', '.join(existing)} already exist(s); nothing was written "
            "(choose another folder: nuvem init FOLDER)"
        )
    for path, text in targets.items():
        path.write_text(text)
    written = list(targets)
    if ci is not None:
        written.append(_workflow(folder, ci, stack_file, actions_repository))
    return written


def _workflow(folder: Path, ci: str, stack_file: Path, actions_repository: str) -> Path:
    names = list(load_stack(stack_file).functions)
    return ci_workflow.write(folder, ci, names, actions_repository)
