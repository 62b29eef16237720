"""Short runs of bench/chaos.py and bench/soak.py, as their own processes, on the embedded
backend: faults under load (model calls among them) lose nothing, and a minute of load
leaves memory and fds flat."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from servers import missing

BENCH = Path(__file__).resolve().parents[2] / "bench"

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def run_bench(script: str, *args: str, json_path: Path, within: float) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--json", str(json_path)],
        capture_output=True,
        text=True,
        timeout=within,
        check=False,
    )
    printed = f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    assert json_path.exists(), printed
    result: dict[str, Any] = json.loads(json_path.read_text())
    result["printed"] = printed
    result["returncode"] = done.returncode
    return result


@pytest.mark.timeout(120)
def test_faults_under_load_lose_no_job_and_fail_no_idempotent_call(tmp_path: Path) -> None:
    result = run_bench(
        # 50 calls/s: light on a busy CI machine. (At 100, the load generator's one big pool,
        # since replaced by small ones, once starved it after a gateway restart: see
        # docs/operations.md.) --models: a tenth of the calls to a small torch model (~3 s
        # more than without it, here).
        "chaos.py", "--duration", "20", "--rate", "50", "--models",
        json_path=tmp_path / "chaos.json", within=110,
    )  # fmt: skip
    printed = result["printed"]
    assert result["violations"] == [], printed
    assert result["returncode"] == 0, printed
    calls = result["calls"]
    assert calls["idem"]["sent"] >= 300, printed
    assert calls["idem"]["failed"] == {}, printed
    assert calls["model"]["sent"] >= 80, printed
    assert calls["model"]["failed"] == {}, printed  # idempotent, and every answer right
    assert set(calls["plain"]["failed"]) <= {"502", "ReadError", "RemoteProtocolError"}, printed
    jobs = result["jobs"]
    assert jobs["submitted"] == calls["job"]["sent"] == jobs["succeeded"], printed
    assert jobs["never_ran"] == jobs["ran_more_than_attempts"] == 0, printed
    kinds = [f["kind"] for f in result["faults"]]
    assert kinds.count("gateway") == 2, printed
    # Replica kills yield to the gateway's restarts, which take 3 s on a quiet machine and
    # 6-8 s on a busy one: in 20 s of load, how many fit varies; at least the first does.
    assert kinds.count("replica") >= 1, printed
    assert all(f["recovered_after_s"] is not None for f in result["faults"]), printed


@pytest.mark.timeout(200)
def test_a_minute_of_load_leaves_memory_and_fds_flat(tmp_path: Path) -> None:
    # Half the maximum, not 80%: wrk shares this machine's two cores with the gateway.
    # `make soak` runs at 80%. Latency drift is the benchmark's verdict, not this test's:
    # timings are not asserted in tests, and one CI run on a busy machine saw p99 go from
    # 6 to 16 ms with memory and fds flat.
    if shutil.which("wrk") is None:
        missing("wrk", "run `make system-deps` or apt-get install wrk")
    plot = tmp_path / "soak.svg"
    result = run_bench(
        "soak.py", "--duration", "60", "--load", "0.5", "--svg", str(plot),
        # About 75 s; the rest is for windows redone after a pause of the machine (one CI run
        # saw the whole machine stop for 50 s).
        json_path=tmp_path / "soak.json", within=190,
    )  # fmt: skip
    leaks = [f for f in result["failed"] if not f.startswith("p99 drifted")]
    assert leaks == [], result["printed"]
    # 1 is the verdict's exit (here at most a p99 drift); 2 would be a soak that broke.
    assert result["returncode"] == (1 if result["failed"] else 0), result["printed"]
    samples = result["samples"]
    assert len(samples) >= 10, result["printed"]
    assert {"gateway", "replica-1", "replica-2"} <= set(samples[0]["rss_mib"])
    assert plot.read_text().startswith("<svg")
