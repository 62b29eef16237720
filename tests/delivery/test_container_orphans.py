"""A gateway killed with SIGKILL leaves its containers running (the attached `podman run`
processes die with it, the containers live on under conmon); the next gateway started on
the same state folder removes them before it starts its own, and says so in an event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from podman_images import echo_image, podman
from support import Nuvem, block_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture
def nuvem(tmp_path: Path) -> Iterator[Nuvem]:
    platform = Nuvem(tmp_path)
    try:
        yield platform
    finally:
        platform.stop()
        podman("rm", "-f", "-t", "0", *containers(platform), check=False)


def containers(nuvem: Nuvem, running: bool = False) -> list[str]:
    """The containers labelled with `nuvem`'s state folder (running ones, or all)."""
    owner = f"label=nuvem.state={nuvem.state_dir.resolve()}"
    listed = json.loads(
        podman("ps", *([] if running else ["--all"]), "--filter", owner, "--format", "json")
    )
    return sorted(str(found["Names"][0]) for found in listed)


def test_a_restarted_gateway_removes_the_containers_its_killed_predecessor_left(
    nuvem: Nuvem,
) -> None:
    image = echo_image("1")
    nuvem.write(
        "nuvem.yaml",
        f"""
        functions:
          boxed:
            image: {image}
            health: /_/health
            scaling: {{min: 1, max: 1}}
        """,
    )
    nuvem.state_dir.mkdir(parents=True, exist_ok=True)
    nuvem.start("-f", "nuvem.yaml")
    nuvem.wait_ready("boxed", within=120)
    (left,) = containers(nuvem, running=True)
    nuvem.kill()
    assert containers(nuvem, running=True) == [left]  # it outlived its gateway

    nuvem.start("-f", "nuvem.yaml")
    nuvem.wait_ready("boxed", within=120)
    (own,) = containers(nuvem)  # the old one is gone, running or not
    assert own != left
    with nuvem.admin() as client:
        events = client.get("/system/events", params={"function": "boxed"}).json()
    swept = [e for e in events if e["kind"] == "orphans_removed"]
    assert len(swept) == 1, events
    assert left in swept[0]["message"]
    assert "previous gateway of this state folder" in swept[0]["message"]
    block_until(lambda: nuvem.has_ready("boxed"), 10, "the new replica to serve")
    with nuvem.admin() as client:
        assert client.get("/function/boxed/raw").status_code == 200
