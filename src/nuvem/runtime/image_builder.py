"""`ImageBuilder`: the images of functions built from source (`build:` in the stack).

A replica's start asks for its function's image; the builder answers the tag at once when
the engine has it (the tag carries the source digest: an unchanged context never builds
twice), else builds it, once however many replicas ask together, reporting each line of
podman's output as progress (`nuvem up` and `nuvem deploy` show it). A failed build is an
ImageBuildFailed naming the function, the Containerfile's line and the output's tail; the
same source then fails at once for a while rather than building again at every retry.

With the stack's `registry:` the tag carries the registry's address instead of
`localhost/` and the image is pushed there once built (or once per gateway when found
built), so replicas elsewhere (a cluster's nodes) pull it (docs/containers.md, "A registry").

Once replicas of a tag serve (`served`), the function's older tags are removed from the
engine's store but for the one it ran before (`image_retention.py` decides which).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from nuvem.errors import ImageBuildFailed
from nuvem.runtime.container_engine import (
    BuildError,
    ContainerEngine,
    EngineError,
    repository_of,
)
from nuvem.runtime.containerfile_steps import failed_step, step_line
from nuvem.runtime.environment import Phase, ProgressEvent
from nuvem.runtime.image_retention import retention
from nuvem.runtime.registry_access import RegistryAccess, registry_hint
from nuvem.stack.build_context import source_digest
from nuvem.stack.container_build import REPOSITORY
from nuvem.stack.function import FunctionSpec

logger = logging.getLogger(__name__)

TAIL_LINES = 8  # lines of a failed build's output quoted in its error
FAILURE_MEMORY = 30.0  # seconds a failed build answers for its tag


def built_image(spec: FunctionSpec) -> str:
    """The tag `spec`'s build makes."""
    assert spec.build is not None, "only functions with build: are built"
    build = spec.build
    if build.source is None:  # posted without the loader: hash the context here
        context = Path(build.context)
        if not context.is_absolute():
            context = Path(spec.root) / context
        build = build.model_copy(update={"source": source_digest(context, build.file, build.args)})
    tag = spec.model_copy(update={"build": build}).image_ref
    assert tag is not None
    return tag


class ImageBuilder:
    def __init__(
        self,
        engine: ContainerEngine,
        on_progress: Callable[[ProgressEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        registry: RegistryAccess | None = None,
    ) -> None:
        self.engine = engine
        self.on_progress = on_progress
        self.clock = clock
        self.registry = registry
        self._pushed: set[str] = set()  # tags this gateway has pushed (or found pushed)
        self._locks: dict[str, asyncio.Lock] = {}
        self._failed: dict[str, tuple[float, ImageBuildFailed]] = {}
        # Per function: the tag its replicas serve, the one they served before it (what
        # a rollback goes back to), and the serving tag whose older images are all gone.
        self._serving: dict[str, str] = {}
        self._before: dict[str, str] = {}
        self._pruned: dict[str, str] = {}
        self._pruning: dict[str, asyncio.Lock] = {}

    async def ensure(self, spec: FunctionSpec) -> str:
        """The image `spec` runs, built first when the engine does not have it."""
        assert spec.build is not None, "only functions with build: are built"
        started = self.clock()
        try:
            tag = built_image(spec)
        except OSError as exc:
            raise ImageBuildFailed(
                f"function {spec.name!r}: cannot read the build context "
                f"{spec.build.context}: {exc}",
                "make the context's files readable, then deploy again",
            ) from None
        if self.registry is not None:
            tag = self.registry.tag(tag)
        key = tag.rsplit(":", 1)[1]
        if tag in self._pushed or (self.registry is None and await self.engine.exists(tag)):
            self._report(spec.name, key, Phase.CACHED, f"image {tag} already built", started)
            return tag
        async with self._locks.setdefault(tag, asyncio.Lock()):
            # Whoever held the lock before us may have built (and pushed) it meanwhile.
            if tag in self._pushed:
                return tag
            failed = self._failed.get(tag)
            if failed is not None and self.clock() - failed[0] < FAILURE_MEMORY:
                raise failed[1]
            if await self.engine.exists(tag):
                self._report(spec.name, key, Phase.CACHED, f"image {tag} already built", started)
            else:
                await self._build(spec, tag, key, started)
            if self.registry is not None:
                await self._push(spec, tag, key, started, self.registry)
        return tag

    async def _push(
        self, spec: FunctionSpec, tag: str, key: str, started: float, registry: RegistryAccess
    ) -> None:
        """Send the image to the registry; a failure is remembered as a build's is (the
        same source would fail the same way), and names the image, the registry and the
        fix."""
        self._report(
            spec.name, key, Phase.BUILDING, f"pushing {tag} to {registry.address}", started
        )
        try:
            await self.engine.push(tag, registry)
        except (EngineError, OSError) as exc:
            error = ImageBuildFailed(
                f"function {spec.name!r}: pushing image {tag} to the registry "
                f"{registry.address} failed: {exc}",
                registry_hint(str(exc), tag, registry.address) + "; then deploy again",
            )
            self._failed[tag] = (self.clock(), error)
            self._report(spec.name, key, Phase.FAILED, str(error), started)
            raise error from None
        self._pushed.add(tag)
        self._report(
            spec.name, key, Phase.READY, f"image {tag} pushed to {registry.address}", started
        )

    async def _build(self, spec: FunctionSpec, tag: str, key: str, started: float) -> None:
        assert spec.build is not None
        context = Path(spec.build.context)
        self._report(spec.name, key, Phase.BUILDING, f"building {tag}", started)
        try:
            await self.engine.build(
                context,
                spec.build.file,
                tag,
                dict(spec.build.args),
                lambda line: self._report(spec.name, key, Phase.BUILDING, line, started),
            )
        except BuildError as exc:
            error = self._failure(spec, tag, str(exc), exc.tail)
        except (EngineError, OSError) as exc:
            error = self._failure(spec, tag, str(exc), [])
        else:
            self._failed.pop(tag, None)
            self._report(spec.name, key, Phase.READY, f"image {tag} built", started)
            return
        self._failed[tag] = (self.clock(), error)
        self._report(spec.name, key, Phase.FAILED, str(error), started)
        raise error

    def _failure(
        self, spec: FunctionSpec, tag: str, what: str, tail: list[str]
    ) -> ImageBuildFailed:
        assert spec.build is not None
        file = Path(spec.build.context) / spec.build.file
        where = f"{file}"
        build_args = "".join(f" --build-arg {k}={v}" for k, v in spec.build.args.items())
        step = failed_step(tail)
        if step is not None:
            stage, number, instruction = step
            line = None
            with contextlib.suppress(OSError):
                line = step_line(file.read_text(errors="replace"), stage, number)
            where = f"{file}:{line}: {instruction}" if line else f"{file}: {instruction}"
        # `--> 15f26a32a8a` only names a finished step's layer: the steps and errors tell.
        shown = [text for text in tail if text.strip() and not text.startswith("-->")]
        shown = shown[-TAIL_LINES:]
        output = (": " + " | ".join(shown)) if shown else ""
        return ImageBuildFailed(
            f"function {spec.name!r}: building image {tag} failed at {where} ({what}){output}",
            f"fix {file} (try `{self.engine.name} build -f {file}{build_args} "
            f"{spec.build.context}`), then deploy again",
        )

    async def served(self, function: str, tag: str) -> list[str]:
        """A replica of `function` (a `build:` one) runs `tag` and is ready: remove the
        function's images built before it, keeping the one it ran before. An image the
        engine refuses to remove (a container still uses it: replicas of an older version
        still draining) stays, and goes at `retry` (a container of the function ended) or
        the next start. Returns the tags removed."""
        repository = f"{REPOSITORY}/{function}"
        if self.registry is not None:
            repository = self.registry.tag(repository)
        if repository_of(tag) != repository:
            return []  # not a tag this builder makes: never touch what it did not build
        async with self._pruning.setdefault(function, asyncio.Lock()):
            serving = self._serving.get(function)
            if serving != tag:
                if serving is not None:
                    self._before[function] = serving
                self._serving[function] = tag
            if self._pruned.get(function) == tag:
                return []
            try:
                stored = await self.engine.stored_images(repository)
            except (EngineError, OSError) as exc:
                logger.warning("cannot list the images of %s to prune them: %s", function, exc)
                return []
            decided = retention(stored, tag, self._before.get(function))
            removed = [ref for ref in decided.remove if await self._remove(function, ref)]
            if len(removed) == len(decided.remove):
                self._pruned[function] = tag
            return removed

    async def retry(self, function: str) -> list[str]:
        """A container of `function` is gone: remove what its serving tag's pruning had
        to keep (an image that container used). Nothing when nothing was kept."""
        tag = self._serving.get(function)
        if tag is None or self._pruned.get(function) == tag:
            return []
        return await self.served(function, tag)

    async def _remove(self, function: str, ref: str) -> bool:
        """Remove one earlier image; False, and it stays, when that fails."""
        try:
            gone = await self.engine.remove_image(ref)
        except (EngineError, OSError) as exc:
            logger.warning("cannot remove %s, an earlier image of %s: %s", ref, function, exc)
            return False
        if not gone:
            logger.debug("%s is in use by a container: kept until it is gone", ref)
        return gone

    def _report(self, function: str, key: str, phase: Phase, message: str, started: float) -> None:
        if self.on_progress is None:
            return
        event = ProgressEvent(function, key, phase, message, self.clock() - started, "image")
        try:
            self.on_progress(event)
        except Exception:  # a broken progress display must not fail the build it reports
            logger.exception("progress callback failed on %s", event)
