"""Echo through a container function against the same echo as a venv function, in one run.

    .venv/bin/python bench/containers.py [--seconds 5] [--rounds 3] [--concurrency 1,32]

One `nuvem up` serves both: `venv-echo` (examples/functions.py:echo in a worker process)
and `image-echo` (bench/container_echo: the same echo, HTTP/1.1 in the standard library, in
an image built here on the test suite's Debian base; podman with the settings of
docs/containers.md). Each has one replica. wrk calls them in interleaved slices
(bench/side_by_side.py): the verdict is the median ratio of calls/s, image over venv, per
concurrency (goal at c=32: at least 0.8), with the median latency each adds. Then the cold
start: each function is let go to zero replicas, and one call is timed (goal for the image:
at most 1 s); the median of `--colds` tries.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from echo import (
    BODY,
    EXAMPLES,
    HOST,
    START_TIMEOUT,
    BenchError,
    Server,
    _concurrency_list,
    _positive,
    err,
    free_port,
    measure,
    out,
    write_script,
)
from side_by_side import Target, interleave, render, slices

from podman_images import base_image, build_image

IMAGE = "localhost/nuvem-bench-echo:1"
ECHO_IMAGE = Path(__file__).resolve().parent / "container_echo"
MIN_RATIO_AT_32 = 0.8
THROUGHPUT = ("venv-echo", "image-echo")
COLD = ("venv-cold", "image-cold")
MAX_COLD_S = 1.0
SCALING = (
    "{min: 0, max: 1, zero_after_s: 2s, panic_window_s: 1s, stable_window_s: 2s, "
    "scale_down_delay_s: 1s}"
)


def stack_text() -> str:
    """One replica each for the throughput; the cold starts on functions of their own that
    the autoscaler takes to zero (and a call brings back)."""
    venv = f"    handler: functions:echo\n    root: {json.dumps(str(EXAMPLES))}\n"
    image = f"    image: {IMAGE}\n"
    fixed = "    max_inflight: 64\n    scaling: {min: 1, max: 1}\n"
    cold = f"    scaling: {SCALING}\n"
    return (
        f"functions:\n  venv-echo:\n{venv}{fixed}  image-echo:\n{image}{fixed}"
        f"  venv-cold:\n{venv}{cold}  image-cold:\n{image}{cold}"
    )


def cold_start(client: httpx.Client, name: str, headers: dict[str, str]) -> float:
    """Seconds one call takes once `name` has gone to zero replicas."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.get(f"/system/function/{name}").json()
        if status["replicas"] == 0 and not status["replicaList"]:
            break
        time.sleep(0.2)
    else:
        raise BenchError(f"{name} did not go to zero replicas within 60 s")
    began = time.perf_counter()
    answer = client.post(f"/function/{name}", content=BODY, headers=headers, timeout=60)
    took = time.perf_counter() - began
    if answer.status_code != 200 or answer.content != BODY:
        raise BenchError(f"{name} cold call answered {answer.status_code} {answer.text[:200]}")
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=_positive, default=5)
    parser.add_argument("--rounds", type=_positive, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--colds", type=_positive, default=3)
    parser.add_argument("--concurrency", type=_concurrency_list, default=[1, 32])
    args = parser.parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed (make system-deps)")
    build_image(ECHO_IMAGE / "Containerfile", ECHO_IMAGE, IMAGE, {"BASE": base_image()})
    with tempfile.TemporaryDirectory(prefix="nuvem-bench-containers-") as folder:
        workdir = Path(folder)
        stack = workdir / "nuvem.yaml"
        stack.write_text(stack_text())
        port, password = free_port(), secrets.token_urlsafe(18)
        base = f"http://{HOST}:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUVEM_")}
        env |= {"NUVEM_ADMIN_PASSWORD": password, "NUVEM_URL": base}
        argv_up = [sys.executable, "-m", "nuvem.cli.main", "up", "-f", str(stack)]
        argv_up += ["--host", HOST, "--port", str(port), "--state-dir", str(workdir / "state")]
        server = Server("nuvem", [*argv_up, "--log-level", "warning"], env, workdir / "up.log")
        try:
            with httpx.Client(base_url=base, timeout=10.0, auth=("admin", password)) as client:
                server.wait_until(
                    "health", lambda: client.get("/healthz").status_code == 200, START_TIMEOUT
                )
                key = client.post(
                    "/system/keys",
                    json={"name": "bench", "functions": [*THROUGHPUT, *COLD]},
                ).json()["key"]
                headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
                for name in (*THROUGHPUT, *COLD):
                    server.wait_until(
                        f"an answer from {name}",
                        lambda n=name: (
                            client.post(
                                f"/function/{n}", content=BODY, headers=headers, timeout=60
                            ).content
                            == BODY
                        ),
                        START_TIMEOUT,
                    )
                script = write_script(workdir, "bench", key)
                pid = server.process.pid
                targets = {
                    name: Target(f"{base}/function/{name}", script, pid) for name in THROUGHPUT
                }
                runs = interleave(
                    wrk, targets, args.concurrency, args.rounds, args.seconds, args.warmup
                )
                p50 = {
                    (name, c): measure(wrk, targets[name].url, script, c, 2, 0).p50_ms
                    for c in args.concurrency
                    for name in targets
                }
                colds = {
                    name: [cold_start(client, name, headers) for _ in range(args.colds)]
                    for name in COLD
                }
        finally:
            server.stop()
    out.print(render(runs, "venv-echo", MIN_RATIO_AT_32, "image vs venv function", "function"))
    for line in slices(runs):
        out.print(line)
    for c in args.concurrency:
        added = p50[("image-echo", c)] - p50[("venv-echo", c)]
        out.print(
            f"c={c}: p50 venv {p50[('venv-echo', c)]:.2f} ms, image "
            f"{p50[('image-echo', c)]:.2f} ms, added {added:+.2f} ms"
        )
    cold = {name: statistics.median(values) for name, values in colds.items()}
    for name, values in colds.items():
        out.print(f"cold start {name}: " + ", ".join(f"{v:.3f}s" for v in values))
    ratio = runs.ratio("image-echo", "venv-echo", 32) if 32 in args.concurrency else None
    held = (ratio is None or ratio >= MIN_RATIO_AT_32) and cold["image-cold"] <= MAX_COLD_S
    out.print(
        f"image/venv at c=32: {ratio:.3f} (goal >= {MIN_RATIO_AT_32})"
        if ratio is not None
        else "c=32 not measured"
    )
    out.print(f"image cold start: {cold['image-cold']:.3f}s (goal <= {MAX_COLD_S:g}s)")
    out.print("[bold green]all goals hold[/]" if held else "[bold red]some goals are missed[/]")
    return 0 if held else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        err.print(f"[red]{error}[/]")
        sys.exit(2)
