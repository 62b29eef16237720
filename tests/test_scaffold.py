"""`nuvem init` writes a stack that loads and handlers that answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nuvem.cli.scaffold import init
from nuvem.errors import Conflict
from nuvem.stack.loader import load_stack


def test_init_writes_a_valid_stack_and_refuses_to_overwrite(tmp_path: Path) -> None:
    written = init(tmp_path / "app")
    assert sorted(p.name for p in written) == ["functions.py", "nuvem.yaml"]
    stack = load_stack(tmp_path / "app" / "nuvem.yaml")
    assert set(stack.functions) == {"app-echo", "app-hello"}
    with pytest.raises(Conflict, match="already exist"):
        init(tmp_path / "app")


def test_init_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nuvem.cli.main", "init", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "functions.py").exists()
    again = subprocess.run(
        [sys.executable, "-m", "nuvem.cli.main", "init", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 5
    assert "already exist" in again.stderr


@pytest.mark.parametrize(
    ("folder", "expected"),
    [("my-app", "my-app"), ("My_App 2", "my-app-2"), ("2048", "app"), ("__", "app")],
)
def test_functions_are_named_after_the_project(tmp_path: Path, folder: str, expected: str) -> None:
    init(tmp_path / folder)
    stack = load_stack(tmp_path / folder / "nuvem.yaml")
    assert set(stack.functions) == {f"{expected}-echo", f"{expected}-hello"}
