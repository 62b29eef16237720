"""The image builder over the in-process engine: one build for many starts, the tag found
again without building, progress, and a failed build's error (Containerfile line, output
tail, fix). Real podman builds are in tests/delivery/test_container_builds.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from nuvem.errors import ImageBuildFailed
from nuvem.runtime.containerfile_steps import failed_step, instruction_lines, step_line
from nuvem.runtime.environment import Phase, ProgressEvent
from nuvem.runtime.fake_engine import FakeEngine
from nuvem.runtime.image_builder import ImageBuilder
from nuvem.stack.function import FunctionSpec
from nuvem.stack.loader import load_stack_text

pytestmark = pytest.mark.anyio


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A base image's app: these tests build images, they never run them."""


def built(root: Path, base: str, version: str | None = None) -> FunctionSpec:
    (root / "Containerfile").write_text("ARG FROM\nFROM ${FROM}\n")
    labels = f", labels: {{nuvem.bundle.version: '{version}'}}" if version else ""
    text = f"functions:\n  echo: {{build: {{args: {{FROM: {base}}}}}{labels}}}\n"
    return load_stack_text(text, "nuvem.yaml", root).functions["echo"]


async def test_concurrent_starts_build_once_and_later_ones_find_the_tag(tmp_path: Path) -> None:
    engine = FakeEngine({"localhost/base:1": echo})
    events: list[ProgressEvent] = []
    builder = ImageBuilder(engine, on_progress=events.append)
    spec = built(tmp_path, "localhost/base:1")
    tags = await asyncio.gather(*(builder.ensure(spec) for _ in range(3)))
    assert tags == [spec.image_ref] * 3
    assert len(engine.builds) == 1
    assert engine.builds[0][1:3] == ("Containerfile", spec.image_ref)
    phases = [e.phase for e in events]
    assert phases[:3] == [Phase.BUILDING, Phase.BUILDING, Phase.READY]
    assert phases[3:] == [Phase.CACHED, Phase.CACHED]
    assert {e.what for e in events} == {"image"}
    assert events[1].message == "STEP 1/1: FROM localhost/base:1"
    assert await builder.ensure(spec) == spec.image_ref
    assert len(engine.builds) == 1


async def test_a_bundle_version_is_part_of_the_tag(tmp_path: Path) -> None:
    spec = built(tmp_path, "localhost/base:1", version="1.4.0+abc")
    assert spec.build is not None
    assert spec.build.source is not None
    assert spec.image_ref == f"localhost/nuvem/echo:1.4.0-abc-{spec.build.source[:12]}"


async def test_a_failed_build_names_the_line_and_is_remembered(tmp_path: Path) -> None:
    engine = FakeEngine({})
    builder = ImageBuilder(engine)
    spec = built(tmp_path, "localhost/missing:1")
    with pytest.raises(ImageBuildFailed) as caught:
        await builder.ensure(spec)
    message = str(caught.value)
    assert "function 'echo': building image localhost/nuvem/echo:" in message
    assert f"{tmp_path / 'Containerfile'}:2: FROM " in message
    assert "base image 'localhost/missing:1' not known" in message
    assert caught.value.hint is not None
    assert "then deploy again" in caught.value.hint
    assert "--build-arg FROM=localhost/missing:1" in caught.value.hint
    # A retry of the same source fails at once rather than building again.
    with pytest.raises(ImageBuildFailed):
        await builder.ensure(spec)
    assert len(engine.builds) == 1


def test_steps_map_to_containerfile_lines() -> None:
    text = "# c\nARG BASE\nFROM ${BASE}\nRUN a && \\\n  b\n\nRUN false\nFROM x AS two\nCOPY . /\n"
    assert instruction_lines(text) == [[3, 4, 7], [8, 9]]
    assert step_line(text, 1, 3) == 7
    assert step_line(text, 2, 2) == 9
    assert step_line(text, 1, 9) is None
    output = ["STEP 1/3: FROM x", "--> abc", "STEP 3/3: RUN false", "Error: building at STEP"]
    assert failed_step(output) == (1, 3, "RUN false")
    assert failed_step(["[2/2] STEP 2/2: COPY . /"]) == (2, 2, "COPY . /")
    assert failed_step(["nothing"]) is None
