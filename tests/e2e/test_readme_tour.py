"""The README's tour, run as written: its shell blocks, top to bottom, in a fresh home.

The tour talks to localhost:8080 and the default state folder, as a new user's shell would;
it runs in a network namespace of its own (so port 8080 is free whatever else runs here) with
HOME in a temporary folder (so the default state folder is new).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from servers import missing

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("## A five-minute tour", "## Async jobs")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def shell_blocks(readme: str, heading: str) -> list[str]:
    """The ```sh blocks of one section of the README."""
    start = readme.index(heading + "\n")
    end = readme.find("\n## ", start + len(heading))
    section = readme[start : end if end > 0 else None]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def tour_script() -> str:
    readme = (ROOT / "README.md").read_text()
    blocks = [block for heading in SECTIONS for block in shell_blocks(readme, heading)]
    assert len(blocks) >= 3, "the tour's shell blocks were not found in README.md"
    return "set -euo pipefail\n" + "\n".join(blocks)


def isolated() -> list[str]:
    """How to run a command in a network namespace of its own, with loopback up."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        missing("a network namespace (root, unshare, ip)", "run the tests as root")
    return ["unshare", "--net", "--", "bash", "-c", 'ip link set lo up && exec bash -x "$0"']


def test_the_readme_tour_works_as_written(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        missing("curl", "apt-get install curl")
    home = tmp_path / "home"
    home.mkdir()
    # The folder a user runs the tour in: a clone's examples and the venv `make` created.
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    script = tmp_path / "tour.sh"
    script.write_text(tour_script())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUVEM_", "XDG_"))}
    env |= {"HOME": str(home), "COLUMNS": "100"}
    state = home / ".local" / "share" / "nuvem"
    try:
        done = subprocess.run(
            [*isolated(), str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=200,
            check=False,
        )
    finally:
        _stop_gateway(state)
    shown = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-6000:]}"
    assert done.returncode == 0, shown
    assert '{"error"' not in done.stdout, shown
    assert '"text":"hi"' in done.stdout.replace(" ", ""), shown  # echo answered the body
    assert "hello, ana" in done.stdout, shown
    assert "hello, world" in done.stdout, shown  # the project from `nuvem init`
    assert '"words": 3' in done.stdout or '"words":3' in done.stdout, shown
    assert "nuvem stopped" in done.stderr, shown


def _stop_gateway(state: Path) -> None:
    """A tour that failed midway leaves its gateway (and its workers) running: end them."""
    with contextlib.suppress(OSError, ValueError):
        pid = int((state / "nuvem.pid").read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # `--detach` started it in a session of its own
