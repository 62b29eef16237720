"""`make test`'s sharing of tests between pytest-xdist workers (tests/xdist_scopes.py), run
for real: a pytest with two workers over a small suite of its own, whose tests write down
the worker that ran them and whose module fixtures write down each start."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).parent
WORKERS = ("-n", "2", "--dist", "loadgroup")

CONFTEST = """
import pytest
import xdist_scopes

def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name.startswith("test_shared_"):
            item.add_marker(pytest.mark.xdist_group("shared"))
    xdist_scopes.suffix_groups(config, items)

def pytest_xdist_make_scheduler(config, log):
    return xdist_scopes.make_scheduler(config, log)
"""

MODULE = """
import os, time
from pathlib import Path
import pytest

LOG = Path(os.environ["SCOPES_LOG"])

def write(line):
    with LOG.open("a") as log:
        log.write(line + "\\n")

@pytest.fixture(scope="module")
def started():
    write("start {name}")
    yield

@pytest.mark.parametrize("n", ["a@b", "c"])
def test_one(started, n):
    time.sleep(0.2)
    write("ran {name} " + os.environ["PYTEST_XDIST_WORKER"])

def test_two(started):
    time.sleep(0.2)
    write("ran {name} " + os.environ["PYTEST_XDIST_WORKER"])

def test_three(started):
    time.sleep(0.2)
    write("ran {name} " + os.environ["PYTEST_XDIST_WORKER"])
"""


def test_a_module_and_a_group_each_run_on_one_worker_with_fixtures_started_once(
    tmp_path: Path,
) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    (suite / "conftest.py").write_text(CONFTEST)
    names = ["shared_a", "shared_b", "own_a", "own_b", "own_c", "own_d"]
    for name in names:
        (suite / f"test_{name}.py").write_text(textwrap.dedent(MODULE).format(name=name))
    log = tmp_path / "log"
    env = {**os.environ, "SCOPES_LOG": str(log), "PYTHONPATH": str(TESTS)}
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *WORKERS],
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = log.read_text().splitlines()
    starts = collections.Counter(line.split()[1] for line in lines if line.startswith("start"))
    assert starts == dict.fromkeys(names, 1), lines
    workers: dict[str, set[str]] = collections.defaultdict(set)
    for line in lines:
        if line.startswith("ran"):
            _, name, worker = line.split()
            workers[name].add(worker)
    # Four tests a module (one parametrized with "@" inside its brackets, no group of its own).
    assert sum(line.startswith("ran") for line in lines) == 4 * len(names), lines
    assert all(len(found) == 1 for found in workers.values()), workers
    assert workers["shared_a"] == workers["shared_b"], workers
    assert {w for found in workers.values() for w in found} == {"gw0", "gw1"}, workers
