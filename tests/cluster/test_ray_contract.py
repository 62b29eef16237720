"""The runtime contract suite (tests/runtime/test_runtime_contract.py) against the Ray
runtime, with replicas on a worker node of the session's cluster.

It runs in a pytest process of its own: that process becomes the cluster's Ray driver,
which this one must not (a driver outlives nothing gracefully once its cluster stops).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ray_cluster import NODE_IPS, RayCluster

SUITE = Path(__file__).resolve().parents[1] / "runtime" / "test_runtime_contract.py"


@pytest.mark.slow
def test_the_ray_runtime_keeps_the_runtime_contract(ray_cluster: RayCluster) -> None:
    # Replicas go to the zone-b node, not beside the driver on the head.
    target = f"{ray_cluster.address},{ray_cluster.token_file},zone=b,{NODE_IPS[1]}"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(SUITE)],
        env={**os.environ, "NUVEM_TEST_RAY_CONTRACT": target},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed is not None, summary
    assert int(passed.group(1)) >= 9, summary  # every contract case ran, none skipped away
    assert "skipped" not in summary, summary
