"""The second tier measured from outside: a step of load beyond what the nodes hold.

    .venv/bin/python bench/pools.py

Starts `nuvem up` with a Ray head that offers no CPU to replicas (so every replica needs
a pool machine) and two pools of the built-in `local` module (real terraform, the real
Ansible playbook, real `nuvem node join` at 127.0.130.x / 127.0.131.x):
- `cold` (warm 0): the step is a function scaled from 0 to 1 replica; measured: step ->
  replica pending -> provider asked (the `node_requested` event) -> machine joined
  (`node_joined`) -> first call served on it;
- `warm` (warm 1): a machine joined before the step; measured: step -> first call served.
Prints each time with its goal (issue 13: asked <= 5 s, warm serving <= 10 s, cold
serving <= 30 s) and the ratio to the system nuvem replaces: a five-minute alert delay
before any VM is even provisioned.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

PASSWORD = "bench-password-123"
THESIS_S = 300.0  # the replaced system's alert delay alone
STACK = """
cluster:
  engine: ray
  node_ip: 127.0.0.2
  cpus: 0
  object_store_memory: 80Mi
functions:
  cold:
    handler: app:hello
    resources: {cpu: 1}
    placement: {labels: {pool: cold}}
    scaling: {min: 0, max: 1, mode: null}
  hot:
    handler: app:hello
    resources: {cpu: 1}
    placement: {labels: {pool: warm}}
    scaling: {min: 0, max: 1, mode: null}
pools:
  cold:
    module: local
    max: 1
    node: {cpus: 1, memory: 1Gi, labels: {pool: cold}}
    scale_down_after: 10m
    variables: {address_range: 127.0.130.0/24, worker_ports_from: 32000,
                object_store_memory: 80Mi}
  warm:
    module: local
    max: 1
    warm: 1
    node: {cpus: 1, memory: 1Gi, labels: {pool: warm}}
    scale_down_after: 10m
    variables: {address_range: 127.0.131.0/24, worker_ports_from: 33000,
                object_store_memory: 80Mi}
"""


def wait(what: str, check: Any, within: float) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise SystemExit(f"timed out after {within:g}s waiting for {what}")


def event_time(client: httpx.Client, kind: str, pool: str, after: float) -> float | None:
    for event in client.get("/system/events", params={"limit": 1000}).json():
        if event["kind"] == kind and f"pool {pool}:" in event["message"] and event["time"] >= after:
            return float(event["time"])
    return None


def serves(client: httpx.Client, name: str) -> bool:
    try:
        return client.post(f"/function/{name}").status_code == 200
    except httpx.HTTPError:
        return False


def step(client: httpx.Client, name: str, pool: str) -> dict[str, float]:
    began = time.time()
    client.post(f"/system/scale-function/{name}", json={"replicas": 1}).raise_for_status()
    times: dict[str, float] = {}
    if pool == "cold":
        wait("pending", lambda: client.get(f"/system/function/{name}").json()["pending"], 30)
        times["pending"] = time.time() - began
        asked = wait("asked", lambda: event_time(client, "node_requested", pool, began), 30)
        times["provider asked"] = asked - began
        joined = wait("joined", lambda: event_time(client, "node_joined", pool, began), 120)
        times["machine joined"] = joined - began
    wait("first call", lambda: serves(client, name), 120)
    times["first call served"] = time.time() - began
    return times


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="nuvem-bench-pools-", dir="/tmp"))
    (root / "app.py").write_text("def hello(req):\n    return b'hi'\n")
    (root / "nuvem.yaml").write_text(textwrap.dedent(STACK))
    state = root / "state"
    port = 18931
    env = {**os.environ, "NUVEM_ADMIN_PASSWORD": PASSWORD, "NUVEM_STATE_DIR": str(state)}
    env["NUVEM_URL"] = f"http://127.0.0.1:{port}"
    log = (root / "gateway.log").open("wb")
    nuvem = [sys.executable, "-m", "nuvem.cli.main"]
    gateway = subprocess.Popen(
        [*nuvem, "up", "-f", str(root / "nuvem.yaml"), "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    client = httpx.Client(base_url=env["NUVEM_URL"], auth=("admin", PASSWORD), timeout=30)
    try:
        wait("the gateway", lambda: _healthy(client), 120)

        def warm_joined() -> bool:
            pools = client.get("/system/pools").json()["pools"]
            warm = next(p for p in pools if p["name"] == "warm")
            return any(m["state"] == "joined" for m in warm["machines"])

        started = time.monotonic()
        wait("the warm machine", warm_joined, 180)
        print(f"warm machine joined {time.monotonic() - started:.1f}s after the gateway was up")
        cold = step(client, "cold", "cold")
        warm = step(client, "hot", "warm")
    finally:
        client.close()
        subprocess.run([*nuvem, "down"], env=env, capture_output=True, timeout=120, check=False)
        gateway.wait(timeout=60)
        for machine in state.glob("pools/*/machines/*"):
            subprocess.run(
                [*nuvem, "node", "leave", "--state-dir", str(machine)],
                env=env,
                capture_output=True,
                timeout=120,
                check=False,
            )
    goals = {"provider asked": 5.0, "first call served": 30.0}
    print(
        f"\n{'cold machine (warm 0)':<28}{'seconds':>9}{'goal':>8}{'vs goal':>9}{'vs thesis':>11}"
    )
    for what, seconds in cold.items():
        goal = goals.get(what)
        ratio = f"{seconds / goal:.2f}x" if goal else ""
        print(f"{what:<28}{seconds:>9.2f}{goal or '':>8}{ratio:>9}{THESIS_S / seconds:>10.0f}x")
    served = warm["first call served"]
    print(
        f"\n{'warm machine (warm 1)':<28}{'seconds':>9}{'goal':>8}{'vs goal':>9}{'vs thesis':>11}"
    )
    ratio = f"{served / 10:.2f}x"
    print(f"{'first call served':<28}{served:>9.2f}{10.0:>8}{ratio:>9}{THESIS_S / served:>10.0f}x")
    print(f"\nthesis: a {THESIS_S:.0f}s alert delay before VM provisioning even starts")


def _healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
