"""`nuvem init` writes a stack that loads and handlers that answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nuvem import __version__
from nuvem.cli.ci_workflow import ACTIONS_REPOSITORY
from nuvem.cli.scaffold import init
from nuvem.errors import BadRequest, Conflict
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


def test_init_with_ci_writes_a_workflow_for_the_stacks_functions(tmp_path: Path) -> None:
    written = init(tmp_path / "shop", ci="github")
    workflow = tmp_path / "shop" / ".github" / "workflows" / "nuvem.yml"
    assert written[-1] == workflow
    text = workflow.read_text()
    assert f"{ACTIONS_REPOSITORY}/.github/actions/nuvem-deploy@v{__version__}" in text
    assert "key-functions: shop-echo,shop-hello" in text
    assert '"$NUVEM_URL/function/shop-hello"' in text
    with pytest.raises(Conflict, match=r"nuvem\.yml already exists"):
        init(tmp_path / "shop", ci="github")


def test_init_with_ci_in_a_project_adds_only_the_workflow(tmp_path: Path) -> None:
    (tmp_path / "nuvem.yaml").write_text("functions:\n  api:\n    handler: app:handle\n")
    written = init(tmp_path, ci="github", actions_repository="my-org/nuvem-fork")
    assert written == [tmp_path / ".github" / "workflows" / "nuvem.yml"]
    assert not (tmp_path / "functions.py").exists()
    text = written[0].read_text()
    assert "my-org/nuvem-fork/.github/actions/nuvem-setup@" in text
    assert "key-functions: api\n" in text


def test_init_with_an_unknown_ci_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="no starter workflow for CI 'gitlab'"):
        init(tmp_path / "shop", ci="gitlab")
    assert not (tmp_path / "shop").exists()


def test_init_ci_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nuvem.cli.main", "init", str(tmp_path / "shop"), "--ci", "github"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "shop" / ".github" / "workflows" / "nuvem.yml").exists()
    assert "gh secret set NUVEM_ADMIN_PASSWORD" in done.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "nuvem.cli.main", "init", str(tmp_path / "x"), "--ci", "gitlab"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert unknown.returncode == 2
    assert "no starter workflow for CI 'gitlab'" in unknown.stderr


def test_init_container_writes_a_containerfile_and_the_sdk_it_copies(tmp_path: Path) -> None:
    written = init(tmp_path / "app", container=True, base="localhost/py:3")
    names = {p.relative_to(tmp_path / "app").as_posix() for p in written}
    assert {"Containerfile", ".containerignore", "sdk/nuvem/handler.py"} <= names
    stack = load_stack(tmp_path / "app" / "nuvem.yaml")
    image = stack.functions["app-hello-image"]
    assert image.build is not None
    assert image.build.args == {"BASE": "localhost/py:3"}
    assert stack.functions["app-hello"].handler == "functions:hello"
    assert "ARG BASE=localhost/py:3" in (tmp_path / "app" / "Containerfile").read_text()
    # The sdk is the standard-library part of nuvem: it serves with no site packages.
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",  # no site packages: only the standard library and the sdk folder
            "-c",
            "import sys; sys.path.insert(0, '.'); import nuvem.runtime.handler_server as m; "
            "print(m.__file__)",
        ],
        cwd=tmp_path / "app" / "sdk",
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(
        tmp_path / "app" / "sdk" / "nuvem" / "runtime" / "handler_server.py"
    )
