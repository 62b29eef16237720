"""nuvem installed without extras, as the gateway image installs it, starts: no module
outside the core dependencies is imported at the top of what `nuvem up` loads."""

from __future__ import annotations

import subprocess
import sys

# The extras' top-level modules (pyproject.toml: servers, ray, models, pools).
EXTRAS = ("redis", "psycopg", "ray", "torch", "numpy", "onnxruntime", "PIL", "ansible")

PROBE = f"""
import sys
for name in {EXTRAS!r}:
    sys.modules[name] = None  # import fails, as where the extra is not installed
import nuvem.cli.server, nuvem.gateway.app, nuvem.platform
from nuvem.config import Settings
from nuvem.gateway.guard import Guard
Guard(None, Settings.from_env({{}}))
"""


def test_the_gateway_loads_without_the_extras() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
