"""Deploying a bundle, and packaging a stack, against a real `nuvem up`.

    .venv/bin/python bench/deploy.py [--rounds 5] [--functions 20]

Deploy: each round changes what the function answers, then times from starting
`nuvem --url URL deploy -f nuvem.yaml` (package, upload, store, deploy, wait) until a call
answers the new version. The baseline, measured in the same run on the same gateway, is the
folder-path deploy (`nuvem deploy --no-upload`, which needs the gateway's disk) of another
function. It prints the medians and their ratio.

Package: the time `nuvem package` takes to build the bundle of a stack of `--functions`
functions (each its own folder of a few files), in-process, median of `--rounds`; the
baseline is packing each of those folders on its own, as cluster mode did before bundles.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from echo import BenchError, Server, free_port  # bench/ is the script's folder
from rich.console import Console

from nuvem.cluster import code_bundle, stack_bundle

HOST = "127.0.0.1"
START_TIMEOUT = 120.0
SERVE_TIMEOUT = 120.0
out = Console()
err = Console(stderr=True)


def nuvem_command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("nuvem")
    return (
        [str(script), *args] if script.exists() else [sys.executable, "-m", "nuvem.cli.main", *args]
    )


def write_function(folder: Path, name: str, answer: str) -> Path:
    (folder / "app").mkdir(parents=True, exist_ok=True)
    (folder / "app" / "functions.py").write_text(f"def handle(req):\n    return {answer!r}\n")
    stack = folder / "nuvem.yaml"
    stack.write_text(f"functions:\n  {name}:\n    handler: functions:handle\n    root: app\n")
    return stack


def until_answers(client: httpx.Client, name: str, answer: str) -> None:
    deadline = time.monotonic() + SERVE_TIMEOUT
    while time.monotonic() < deadline:
        try:
            response = client.post(f"/function/{name}")
            if response.status_code == 200 and response.text == answer:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise BenchError(f"{name} did not answer {answer!r} within {SERVE_TIMEOUT:.0f}s")


def timed_deploys(
    client: httpx.Client, env: dict[str, str], folder: Path, name: str, args: list[str], rounds: int
) -> list[float]:
    times = []
    for n in range(rounds + 1):  # the first creates the function: not timed
        answer = f"{name} v{n}"
        # A folder-path deploy sees no change in the same folder (the spec is the same):
        # the baseline gets a new folder each round, and --replace to take it over.
        place = folder / f"v{n}" if "--no-upload" in args else folder
        stack = write_function(place, name, answer)
        start = time.perf_counter()
        done = subprocess.run(
            nuvem_command(
                *args[:2], "deploy", "-f", str(stack), *args[2:], "--version", f"1.0.{n}"
            ),
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"nuvem deploy failed:\n{done.stderr}")
        until_answers(client, name, answer)
        if n:
            times.append(time.perf_counter() - start)
    return times


def package_times(root: Path, functions: int, rounds: int) -> tuple[list[float], list[float]]:
    lines = ["functions:"]
    for i in range(functions):
        folder = root / f"f{i:02d}"
        (folder / "lib").mkdir(parents=True)
        (folder / "functions.py").write_text(f"def handle(req):\n    return 'f{i}'\n" * 20)
        (folder / "requirements.txt").write_text("six==1.16.0\n")
        for j in range(5):
            (folder / "lib" / f"part{j}.py").write_text(f"VALUE = {j}\n" * 200)
        lines += [f"  f{i:02d}:", "    handler: functions:handle", f"    root: f{i:02d}"]
    stack = root / "nuvem.yaml"
    stack.write_text("\n".join(lines) + "\n")
    bundle, each = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        stack_bundle.build(stack, "1.0.0")
        bundle.append(time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(functions):
            code_bundle.pack(root / f"f{i:02d}")
        each.append(time.perf_counter() - start)
    return bundle, each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--functions", type=int, default=20)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nuvem-bench-deploy-") as tmp:
        root = Path(tmp)
        port = free_port()
        url = f"http://{HOST}:{port}"
        password = secrets.token_urlsafe(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUVEM_")}
        env.update(
            NUVEM_STATE_DIR=str(root / "state"), NUVEM_ADMIN_PASSWORD=password, NUVEM_URL=url
        )
        server = Server("nuvem up", nuvem_command("up", "--port", str(port)), env, root / "up.log")
        try:
            with httpx.Client(base_url=url, auth=("admin", password), timeout=30.0) as client:
                server.wait_until(
                    "health", lambda: client.get("/healthz").status_code == 200, START_TIMEOUT
                )
                bundle = timed_deploys(
                    client, env, root / "bundled", "bundled", ["--url", url], options.rounds
                )
                folder = timed_deploys(
                    client,
                    env,
                    root / "folder",
                    "folder",
                    ["--url", url, "--no-upload", "--replace"],
                    options.rounds,
                )
        finally:
            server.stop()
        packaged, packed = package_times(root / "stack", options.functions, options.rounds)
    b, f = statistics.median(bundle), statistics.median(folder)
    out.print(  # one line each, whatever the terminal
        f"deploy, command -> new version serving (median of {options.rounds}): "
        f"bundle {b * 1000:.0f} ms, folder path {f * 1000:.0f} ms (baseline); ratio {b / f:.2f}",
        soft_wrap=True,
    )
    p, e = statistics.median(packaged), statistics.median(packed)
    out.print(  # one line each, whatever the terminal
        f"package a stack of {options.functions} functions (median of {options.rounds}): "
        f"{p * 1000:.1f} ms; packing each folder alone {e * 1000:.1f} ms (baseline); "
        f"ratio {p / e:.2f}",
        soft_wrap=True,
    )


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        err.print(f"[red]bench failed:[/red] {exc}")
        sys.exit(1)
