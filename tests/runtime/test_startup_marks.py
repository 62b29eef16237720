"""Start-up marks: off unless asked for, and from a real replica's worker when asked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nuvem import startup_marks
from support import Running

pytestmark = pytest.mark.anyio


def phases(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_no_variable_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(startup_marks.VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    startup_marks.mark("anything")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_file_does_not_fail_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(startup_marks.VARIABLE, str(tmp_path / "missing-folder" / "marks"))
    startup_marks.mark("still starts")  # raises nothing


async def test_a_replica_marks_its_phases_from_its_own_process(
    gateway: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks = tmp_path / "marks.jsonl"
    monkeypatch.setenv(startup_marks.VARIABLE, str(marks))
    await gateway.deploy("functions: {plain: {handler: 'handlers:echo'}}")
    assert (await gateway.invoke("plain", b"hi")).text == "hi"
    lines = phases(marks)
    by_phase = {str(line["phase"]): line for line in lines}
    ordered, ready = by_phase["replica ordered"], by_phase["replica ready"]
    set_up = by_phase["worker: handler set up"]
    assert ordered["pid"] == ready["pid"] == os.getpid()
    assert set_up["pid"] != os.getpid()  # the worker wrote it, carrying the variable
    assert float(str(ordered["t"])) <= float(str(set_up["t"])) <= float(str(ready["t"]))
