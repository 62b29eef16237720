"""The atheris targets (atheris_targets.py), each run briefly and seeded: a crash fails the test
with the input libFuzzer found. `make fuzz` runs them for minutes."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from servers import missing

TARGETS = Path(__file__).with_name("atheris_targets.py")
RUNS = os.environ.get("NUVEM_ATHERIS_RUNS", "2000")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.mark.parametrize("target", ["oip", "gzip", "multipart", "stack"])
def test_the_parser_survives_coverage_guided_fuzzing(target: str, tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        missing("atheris", "make install (it is in the dev extra)")
    done = subprocess.run(
        [
            sys.executable,
            str(TARGETS),
            target,
            f"-runs={RUNS}",
            "-seed=1",
            "-max_total_time=60",
            "-rss_limit_mb=2048",
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    report = "\n".join(
        line for line in done.stderr.splitlines() if not line.startswith("INFO: Instrumenting")
    )
    assert done.returncode == 0, f"atheris found a crash in {target}:\n{report[-6000:]}"
    assert "DONE" in report, report[-3000:]
