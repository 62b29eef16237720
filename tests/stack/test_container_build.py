"""`build:` in a stack file: exclusive with image:, the context and Containerfile found at
load time (errors with file and line), and the source digest that names the image."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from nuvem.errors import SpecError
from nuvem.stack.build_context import context_files, ignored, source_digest
from nuvem.stack.loader import load_stack_text
from nuvem.stack.stack import Stack

STACK = """
functions:
  shout:
    build:
      context: src
      args: {BASE: localhost/base:1, LEVEL: 2}
"""


def load(root: Path, text: str = STACK) -> Stack:
    return load_stack_text(dedent(text), "nuvem.yaml", root)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Containerfile").write_text("ARG BASE\nFROM ${BASE}\nCOPY app.py /\n")
    (tmp_path / "src" / "app.py").write_text("print('hi')\n")
    return tmp_path


def test_a_build_resolves_its_context_and_hashes_it(root: Path) -> None:
    spec = load(root).functions["shout"]
    assert spec.build is not None
    assert spec.build.context == str(root / "src")
    assert spec.build.args == {"BASE": "localhost/base:1", "LEVEL": "2"}
    assert spec.handler == ""
    assert spec.serves_http
    assert spec.build.source is not None
    assert spec.image_ref == f"localhost/nuvem/shout:{spec.build.source[:12]}"
    # The same files give the same spec; a changed file, Containerfile or argument does not.
    assert load(root).functions["shout"] == spec
    (root / "src" / "app.py").write_text("print('hello')\n")
    changed = load(root).functions["shout"]
    assert changed.build is not None
    assert changed.build.source != spec.build.source
    assert changed.fingerprint() != spec.fingerprint()
    other_args = load(root, STACK.replace("LEVEL: 2", "LEVEL: 3")).functions["shout"]
    assert other_args.build is not None
    assert other_args.build.source != changed.build.source


def test_the_ignore_file_and_caches_stay_out_of_the_digest(root: Path) -> None:
    context = root / "src"
    (context / ".containerignore").write_text("# comment\nnotes/\n*.log\n!keep.log\n")
    before = source_digest(context, "Containerfile", {})
    (context / "notes").mkdir()
    (context / "notes" / "todo.txt").write_text("x")
    (context / "debug.log").write_text("x")
    (context / "__pycache__").mkdir()
    (context / "__pycache__" / "app.pyc").write_bytes(b"x")
    assert source_digest(context, "Containerfile", {}) == before
    (context / "keep.log").write_text("x")
    names = [p.relative_to(context).as_posix() for p in context_files(context)]
    assert names == [".containerignore", "Containerfile", "app.py", "keep.log"]
    assert source_digest(context, "Containerfile", {}) != before


def test_ignore_patterns_match_folders_and_nested_paths() -> None:
    assert ignored("dist/a.zip", ["dist"])
    assert ignored("a/b/__pycache__/x.pyc", ["**/__pycache__"])
    assert not ignored("src/app.py", ["dist", "*.log"])
    assert not ignored("keep.log", ["*.log", "!keep.log"])


def test_image_and_build_are_exclusive_with_the_line(root: Path) -> None:
    text = """
    functions:
      ok:
        handler: functions:echo
      both:
        image: localhost/x:1
        build: {context: src}
    """
    with pytest.raises(SpecError) as caught:
        load(root, text)
    message = str(caught.value)
    assert "nuvem.yaml:5: functions.both: image and build are exclusive" in message
    assert "remove one of them" in message


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        ("{context: nowhere}", "nuvem.yaml:4: functions.shout.build.context: no folder at"),
        (
            "{context: src, file: Dockerfile}",
            "nuvem.yaml:4: functions.shout.build.file: no Containerfile at",
        ),
        ("{context: src, file: /etc/passwd}", "is not a path inside the context"),
        ("{context: src, handler: x}", "functions.shout.build.handler"),
    ],
)
def test_a_build_that_cannot_be_found_names_the_field(
    root: Path, build: str, expected: str
) -> None:
    text = f"functions:\n  shout:\n    health: /_/health\n    build: {build}\n"
    with pytest.raises(SpecError) as caught:
        load_stack_text(text, "nuvem.yaml", root)
    assert expected in str(caught.value)


def test_a_build_excludes_what_only_a_handler_has(root: Path) -> None:
    text = "functions:\n  shout:\n    build: {context: src}\n    requirements: [numpy]\n"
    with pytest.raises(SpecError, match="build and requirements are exclusive"):
        load_stack_text(text, "nuvem.yaml", root)
