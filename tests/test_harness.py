"""Tests share one harness: a module under tests/ imports `support`, the pytest plugins that
pyproject.toml registers with -p (`servers`, `ray_cluster`) and handler files, never another
test module (that is how helpers got written three times)."""

from __future__ import annotations

import ast
import itertools
import shlex
import tomllib
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _plugins(pyproject: Path = TESTS.parent / "pyproject.toml") -> set[str]:
    """The modules pytest loads with `-p NAME` (its addopts in pyproject.toml)."""
    words = shlex.split(
        tomllib.loads(pyproject.read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    )
    return {name for flag, name in itertools.pairwise(words) if flag == "-p"}


# redis_cluster: the Redis Cluster the `servers` plugin starts, a harness module like support;
# registry_server: the image registry the podman tests push to (docker-registry);
# xdist_scopes: how conftest.py shares the tests between pytest-xdist workers;
# listening: the listening sockets in /proc, for the tests that every port refuses strangers.
SHARED = {
    "listening",
    "podman_images",
    "xdist_scopes",
    "support",
    "redis_cluster",
    "registry_server",
    "handlers",
    "batch_handlers",
    "broken_import",
    *_plugins(),
}


def _local_modules(tests: Path) -> set[str]:
    """Top-level names a module under `tests` could import from `tests` (it is on the path)."""
    names = {path.stem for path in tests.glob("*.py")}
    names |= {path.name for path in tests.iterdir() if path.is_dir()}
    names |= {path.stem for path in (tests / "handlers").glob("*.py")}
    return names


def _violations(tests: Path = TESTS) -> list[str]:
    local = _local_modules(tests) - SHARED
    problems = []
    for path in sorted(tests.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] in local:
                    relative = path.relative_to(tests)
                    problems.append(f"{relative}:{node.lineno}: imports {name}; use support")
    return problems


def test_test_modules_import_only_the_harness() -> None:
    assert _violations() == []


def test_the_walk_sees_a_test_module_imported(tmp_path: Path) -> None:
    (tmp_path / "handlers").mkdir()
    (tmp_path / "support.py").write_text("")
    (tmp_path / "conftest.py").write_text("")
    (tmp_path / "e2e").mkdir()
    (tmp_path / "e2e" / "test_a.py").write_text(
        "from support import wait_until\nimport conftest\nfrom e2e.test_b import x\n"
    )
    assert _violations(tmp_path) == [
        "e2e/test_a.py:2: imports conftest; use support",
        "e2e/test_a.py:3: imports e2e.test_b; use support",
    ]
