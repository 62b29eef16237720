"""`nuvem init`: a stack file and a handler module to start from."""

from __future__ import annotations

import re
from pathlib import Path

import nuvem
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


CONTAINER_STACK = """\
# A nuvem stack: `nuvem up -f nuvem.yaml`, then `nuvem deploy -f nuvem.yaml` after changes.
# One handler, two ways: {app}-hello runs functions.py in a virtual environment,
# {app}-hello-image in an image built from the Containerfile (docs/containers.md).
functions:
  {app}-hello:
    handler: functions:hello
  {app}-hello-image:
    build:
      context: .                   # built at deploy; rebuilt when a file here changes
      file: Containerfile
      args: {{BASE: {base}}}  # any image with python3 (3.11+)
    health: /_/health
"""

CONTAINERFILE = """\
# {app}-hello-image: functions.py served over HTTP by nuvem's handler server (sdk/, the
# standard-library part of nuvem), the same handler {app}-hello runs in a venv.
# BASE is any image with python3 3.11+; the stack file's build args set it.
ARG BASE={base}
FROM ${{BASE}}
COPY sdk/ /opt/nuvem-sdk/
COPY functions.py /app/
# Requirements go into the image here, e.g.:
# COPY requirements.txt /app/
# RUN python3 -m pip install --no-cache-dir -r /app/requirements.txt
ENV PYTHONPATH=/opt/nuvem-sdk PYTHONUNBUFFERED=1
EXPOSE 8080
CMD ["python3", "-m", "nuvem.runtime.handler_server", "functions:hello", "--root", "/app", \\
     "--port", "8080"]
"""

# What podman leaves out of the build, and nuvem out of the image's source digest: the
# stack file (changing scaling must not rebuild the image), bundles, caches.
CONTAINERIGNORE = """\
nuvem.yaml
dist/
.venv/
**/__pycache__/
"""

DEFAULT_BASE = "docker.io/library/python:3.12-slim"
# The standard-library part of nuvem an image needs to serve a handler (handler_server.py).
SDK_FILES = (
    "__init__.py",
    "handler.py",
    "runtime/__init__.py",
    "runtime/loader.py",
    "runtime/handler_server.py",
)


def app_name(folder: Path) -> str:
    """The folder's name as the start of a function name (`My_App` -> `my-app`)."""
    name = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower())
    name = re.sub(r"-+", "-", name).lstrip("-0123456789")[:40].strip("-")
    return name or "app"


def init(
    folder: Path,
    ci: str | None = None,
    actions_repository: str = "",
    container: bool = False,
    base: str = DEFAULT_BASE,
) -> list[Path]:
    """Write nuvem.yaml and functions.py into `folder`, never over either; with `container`,
    also a Containerfile (FROM `base`) and the sdk/ it copies, for the same handler as an
    image; with `ci`, also a starter CI workflow (for a folder that has a stack file
    already, only the workflow)."""
    stack_file = folder / "nuvem.yaml"
    if ci is not None:
        ci_workflow.target(folder, ci)  # refused before anything is written
    folder.mkdir(parents=True, exist_ok=True)
    if ci is not None and stack_file.exists():
        return [_workflow(folder, ci, stack_file, actions_repository)]
    app = app_name(folder)
    targets = {stack_file: STACK.format(app=app), folder / "functions.py": FUNCTIONS}
    if container:
        targets[stack_file] = CONTAINER_STACK.format(app=app, base=base)
        targets[folder / "Containerfile"] = CONTAINERFILE.format(app=app, base=base)
        targets[folder / ".containerignore"] = CONTAINERIGNORE
        package = Path(nuvem.__file__).parent
        for name in SDK_FILES:
            targets[folder / "sdk" / "nuvem" / name] = (package / name).read_text()
    existing = [str(path) for path in targets if path.exists()]
    if existing:
        raise Conflict(
            f"{', '.join(existing)} already exist(s); nothing was written "
            "(choose another folder: nuvem init FOLDER)"
        )
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    written = list(targets)
    if ci is not None:
        written.append(_workflow(folder, ci, stack_file, actions_repository))
    return written


def _workflow(folder: Path, ci: str, stack_file: Path, actions_repository: str) -> Path:
    names = list(load_stack(stack_file).functions)
    return ci_workflow.write(folder, ci, names, actions_repository)
