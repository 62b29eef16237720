"""A handler function's code digest: its folder's code, and nothing that is not code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nuvem.stack import code_files
from nuvem.stack.code_files import code_digest, files_under
from nuvem.stack.function import FunctionSpec
from nuvem.stack.loader import load_stack

STACK = "functions:\n  echo:\n    handler: functions:echo\n"


def _project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "functions.py").write_text("def echo(req):\n    return req.body\n")
    (root / "lib").mkdir(exist_ok=True)
    (root / "lib" / "util.py").write_text("X = 1\n")
    (root / "nuvem.yaml").write_text(STACK)
    return root


def test_the_same_code_has_the_same_digest_whatever_its_times(tmp_path: Path) -> None:
    first = _project(tmp_path / "a")
    second = _project(tmp_path / "b")
    os.utime(second / "functions.py", (1, 1))
    assert code_digest(first) == code_digest(second)


def test_an_edit_a_new_file_or_a_mode_changes_the_digest(tmp_path: Path) -> None:
    root = _project(tmp_path)
    before = code_digest(root)
    (root / "lib" / "util.py").write_text("X = 2\n")
    edited = code_digest(root)
    (root / "lib" / "more.py").write_text("")
    added = code_digest(root)
    (root / "lib" / "more.py").chmod(0o755)
    assert len({before, edited, added, code_digest(root)}) == 4


def test_caches_environments_state_folders_and_stack_files_are_no_code(tmp_path: Path) -> None:
    root = _project(tmp_path)
    before = code_digest(root)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "functions.cpython-311.pyc").write_bytes(b"\0")
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "site.py").write_text("")
    # A state folder inside the project (`nuvem up --state-dir ./state`): its records and
    # admin password change at every call and must never be shipped to a node as code.
    (root / "state").mkdir()
    (root / "state" / "nuvem.lock").write_text("")
    (root / "state" / "admin-password").write_text("secret")
    # Stack files: a changed scaling setting, or another stack beside this one.
    (root / "nuvem.yaml").write_text(STACK + "    scaling: {min: 2}\n")
    (root / "other.yml").write_text("functions:\n  other:\n    handler: functions:echo\n")
    assert code_digest(root) == before
    assert Path(root / "state" / "admin-password") not in files_under(root)
    # A YAML file that is not a stack file may be the handler's configuration: it counts.
    (root / "labels.yaml").write_text("cat: 1\n")
    assert code_digest(root) != before


def test_large_files_count_by_size_and_time_and_huge_folders_are_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path)
    monkeypatch.setattr(code_files, "CONTENT_LIMIT", 10)
    (root / "weights.bin").write_bytes(b"a" * 100)
    before = code_digest(root)
    os.utime(root / "weights.bin", ns=(1, 1))
    assert code_digest(root) != before  # its time changed: read as a change, unread
    monkeypatch.setattr(code_files, "FILE_LIMIT", 3)
    assert code_digest(root) is None


def test_the_loader_sets_the_digest_and_the_fingerprint_follows_it(tmp_path: Path) -> None:
    root = _project(tmp_path)
    before = load_stack(root / "nuvem.yaml").functions["echo"]
    assert before.source == code_digest(root)
    (root / "functions.py").write_text("def echo(req):\n    return b'edited'\n")
    after = load_stack(root / "nuvem.yaml").functions["echo"]
    assert after.source != before.source
    assert after.fingerprint() != before.fingerprint()
    # A spec without a digest (the API's, or one recorded before digests) keeps the
    # fingerprint it had: an upgrade restarts nothing.
    # (The value is that of the commit before digests existed.)
    assert FunctionSpec(name="echo", handler="functions:echo").fingerprint() == "6d8af7e77c074dea"


def test_an_image_function_has_no_code_digest(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "nuvem.yaml").write_text(
        "functions:\n  resize:\n    image: localhost/resize:1.4.0\n    port: 8080\n"
    )
    assert load_stack(root / "nuvem.yaml").functions["resize"].source is None
