"""The image builder over the in-process engine: one build for many starts, the tag found
again without building, progress, a failed build's error (Containerfile line, output
tail, fix), and the pruning of earlier builds once a new one serves. Real podman builds
are in tests/delivery/test_container_builds.py."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from nuvem.errors import ImageBuildFailed
from nuvem.runtime.container_engine import ContainerRun, EngineError, StoredImage
from nuvem.runtime.containerfile_steps import failed_step, instruction_lines, step_line
from nuvem.runtime.environment import Phase, ProgressEvent
from nuvem.runtime.fake_engine import FakeEngine
from nuvem.runtime.image_builder import ImageBuilder
from nuvem.stack.function import FunctionSpec
from nuvem.stack.loader import load_stack_text
from support import free_port

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


def sources(root: Path, count: int) -> list[FunctionSpec]:
    """`count` sources of one function, each a change of its context."""
    specs = []
    for version in range(count):
        (root / "app.py").write_text(f"VERSION = {version}\n")
        specs.append(built(root, "localhost/base:1"))
    return specs


async def test_a_served_build_leaves_it_and_the_one_before(tmp_path: Path) -> None:
    engine = FakeEngine({"localhost/base:1": echo, "localhost/nuvem/other:1": echo})
    builder = ImageBuilder(engine)
    tags = []
    for spec in sources(tmp_path, 3):
        tags.append(await builder.ensure(spec))
        await builder.served("echo", tags[-1])
    assert len(set(tags)) == 3
    assert engine.removed_images == [tags[0]]
    assert tags[1] in engine.images
    assert tags[2] in engine.images
    # Never another repository's images, nuvem's or the user's.
    assert {"localhost/base:1", "localhost/nuvem/other:1"} <= set(engine.images)
    # Served again (another replica of it), nothing is left to do.
    assert await builder.served("echo", tags[2]) == []
    # A name it did not build is never pruned from, whatever the function.
    assert await builder.served("other", "localhost/base:1") == []
    assert await builder.served("base", "localhost/base:1") == []
    assert {"localhost/base:1", "localhost/nuvem/other:1"} <= set(engine.images)


async def test_an_image_a_container_uses_stays_and_goes_on_a_later_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = FakeEngine({"localhost/base:1": echo})
    builder = ImageBuilder(engine)
    tags = [await builder.ensure(spec) for spec in sources(tmp_path, 3)]
    await builder.served("echo", tags[0])
    # A replica of the first still runs (drained slowly) when the third serves.
    old = ContainerRun("old-1", tags[0], host_port=free_port(), port=8080)
    await engine.run(old)
    try:
        await builder.served("echo", tags[1])
        with caplog.at_level(logging.DEBUG, logger="nuvem.runtime.image_builder"):
            assert await builder.served("echo", tags[2]) == []
        assert f"{tags[0]} is in use by a container" in caplog.text
        assert tags[0] in engine.images
        assert await builder.retry("echo") == []  # still in use
    finally:
        await engine.remove(old.name)
    # Its container gone (the runtime retries then), the image goes, and only once.
    assert await builder.retry("echo") == [tags[0]]
    assert await builder.retry("echo") == []
    assert await builder.served("echo", tags[2]) == []
    assert set(engine.images) == {"localhost/base:1", tags[1], tags[2]}


async def test_a_kept_image_goes_at_the_next_start_too(tmp_path: Path) -> None:
    engine = FakeEngine({"localhost/base:1": echo})
    builder = ImageBuilder(engine)
    tags = [await builder.ensure(spec) for spec in sources(tmp_path, 3)]
    old = ContainerRun("old-1", tags[0], host_port=free_port(), port=8080)
    await engine.run(old)
    await builder.served("echo", tags[1])
    assert await builder.served("echo", tags[2]) == []
    await engine.remove(old.name)
    assert await builder.served("echo", tags[2]) == [tags[0]]
    assert await builder.retry("nobody") == []


async def test_a_rollback_finds_its_image_and_keeps_the_one_it_left(tmp_path: Path) -> None:
    engine = FakeEngine({"localhost/base:1": echo})
    builder = ImageBuilder(engine)
    specs = sources(tmp_path, 3)
    tags = [await builder.ensure(spec) for spec in specs[:2]]
    for tag in tags:
        await builder.served("echo", tag)
    # Back to the first source: built already, so no build, and the second stays.
    assert await builder.ensure(specs[0]) == tags[0]
    assert len(engine.builds) == 2
    await builder.served("echo", tags[0])
    assert engine.removed_images == []
    # Then a third: the first (what it replaced) stays, the second goes.
    third = await builder.ensure(specs[2])
    assert await builder.served("echo", third) == [tags[1]]
    assert set(engine.images) == {"localhost/base:1", tags[0], third}


async def test_an_engine_that_cannot_list_its_images_leaves_them(tmp_path: Path) -> None:
    class Failing(FakeEngine):
        async def stored_images(self, repository: str) -> list[StoredImage]:
            raise EngineError("podman images failed (125): storage is locked")

    engine = Failing({"localhost/base:1": echo})
    builder = ImageBuilder(engine)
    tags = [await builder.ensure(spec) for spec in sources(tmp_path, 3)]
    for tag in tags:
        assert await builder.served("echo", tag) == []
    assert set(tags) <= set(engine.images)
