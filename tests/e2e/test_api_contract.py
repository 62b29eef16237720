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
import warnings
from pathlib import Path

import pytest

from servers import missing
from support import Nuvem

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "examples"
FUNCTIONS = ("echo", "hello", "slow", "wordcount", "tiny")
# A model beside the example stack's functions, so the model protocols (/v2/..., /predictions)
# are fuzzed against one that answers: 8 FP32 inputs, as the document's example request has,
# so schemathesis's examples phase gets a 200 from it. schemathesis.toml names these.
TINY_MODEL = """
  tiny:
    model:
      path: tiny.pt
      inputs: [{name: x, datatype: FP32, shape: [-1, 8]}]
      outputs: [{name: y, datatype: FP32, shape: [-1, 4]}]
      threads: 1
"""

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(420)]


def schemathesis() -> Path:
    found = Path(sys.executable).with_name("st")
    if not found.exists():
        missing("schemathesis", "make install (it is in the dev extra)")
    return found


def tiny_model(path: Path) -> None:
    """y = x W^T + b of 8 inputs and 4 outputs, traced to TorchScript: small and fast to load."""
    try:
        import torch
    except ImportError:
        missing("torch", "make install (the models extra)")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        # TorchScript is deprecated, and still what many have; nuvem serves it.
        warnings.simplefilter("ignore", DeprecationWarning)
        linear = torch.nn.Linear(8, 4).eval()
        traced = torch.jit.trace(linear, torch.zeros(1, 8))  # type: ignore[no-untyped-call]
        torch.jit.save(traced, str(path))


def test_the_gateway_answers_within_its_openapi_document(tmp_path: Path) -> None:
    st = schemathesis()
    shutil.copy(EXAMPLES / "functions.py", tmp_path / "functions.py")
    (tmp_path / "nuvem.yaml").write_text((EXAMPLES / "nuvem.yaml").read_text() + TINY_MODEL)
    tiny_model(tmp_path / "tiny.pt")
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
    print(report)  # coverage (operations, links) shows with pytest -s or -rA
    assert done.returncode == 0, f"schemathesis found problems:\n{report}"
    assert "Tested:" in done.stdout, report  # it did reach the operations
