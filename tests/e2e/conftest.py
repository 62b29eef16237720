"""The `nuvem` fixture of the end-to-end tests: the installed command in a folder of its own,
with handlers every test may deploy, and whatever it started ended afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import Nuvem

# Handlers every test may deploy; written as `functions.py` next to the stack files.
FUNCTIONS = """
import os
import time

from nuvem import Response


def echo(req):
    return Response(200, req.body, {"content-type": "application/octet-stream"})


def hello(req):
    return {"message": "hello, " + req.query.get("name", "world"), "pid": os.getpid()}


def other(req):
    return "other"


def slow(req):
    time.sleep(float(req.query.get("seconds", "1.5")))
    return {"pid": os.getpid()}


class Broken:
    def setup(self):
        raise RuntimeError("the model weights are missing")

    def __call__(self, req):
        return "never"
"""


@pytest.fixture
def nuvem(tmp_path: Path) -> Iterator[Nuvem]:
    (tmp_path / "functions.py").write_text(FUNCTIONS)
    platform = Nuvem(tmp_path)
    try:
        yield platform
    finally:
        platform.stop()
