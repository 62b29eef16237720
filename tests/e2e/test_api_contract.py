"""schemathesis against a real gateway serving the example stack: every check, every phase
(stateful included), admin credentials, a fixed seed; any finding fails the test.

The run's settings are in schemathesis.toml beside this file; its bound is the number of
examples per operation (and the subprocess timeout below as a last resort), not a clock, so
the same seed sends the same requests on a fast machine and a slow one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from servers import missing
from support import Nuvem

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "examples"
FUNCTIONS = ("echo", "hello", "slow", "wordcount")

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(420)]


def schemathesis() -> Path:
    found = Path(sys.executable).with_name("st")
    if not found.exists():
        missing("schemathesis", "make install (it is in the dev extra)")
    return found


def test_the_gateway_answers_within_its_openapi_document(tmp_path: Path) -> None:
    st = schemathesis()
    for name in ("nuvem.yaml", "functions.py"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    # schemathesis's ignored_auth check sends requests without credentials on purpose; from
    # one address, the per-address limit on 401s would then refuse its other requests 429.
    platform = Nuvem(tmp_path, env={"NUVEM_UNAUTH_RATE": "0"})
    try:
        platform.start("-f", "nuvem.yaml")
        platform.wait_ready(*FUNCTIONS, within=120)
        run = tmp_path / "schemathesis"
        run.mkdir()  # its cache and reports stay in the test's folder
        done = subprocess.run(
            [
                str(st),
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "--no-color",
                "run",
                f"{platform.url}/openapi.json",
                "--auth",
                f"admin:{platform.admin_password()}",
                "--exclude-path",
                "/system/shutdown",
            ],
            cwd=run,
            env={
                **platform.env,
                "PYTHONPATH": str(HERE),
                "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
            },
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=360,
            check=False,
        )
    finally:
        platform.stop()
    report = done.stdout[-20000:] + done.stderr[-5000:]
    assert done.returncode == 0, f"schemathesis found problems:\n{report}"
    assert "Tested:" in done.stdout, report  # it did reach the operations
