"""Images built from source with real podman: `nuvem init --container`, packaged, built
by the gateway from the bundle's context, answers as the venv function does; an unchanged
context is not built again and a changed one is; once a new source serves, the images
before the one it replaced go; a failed build names the Containerfile's line. One project
per module, built on the cached Debian base (tests/podman_images.py).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nuvem.cli.scaffold import init
from nuvem.cluster import stack_bundle
from nuvem.control.deployment import Deployment
from nuvem.errors import ImageBuildFailed
from nuvem.runtime.environment import Phase, ProgressEvent
from nuvem.runtime.image_builder import ImageBuilder
from nuvem.runtime.podman import Podman
from nuvem.stack.loader import load_stack
from podman_images import base_image, podman
from support import Running, serving, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

BUILD_WITHIN = 240.0  # seconds for a build and start on a busy machine


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`nuvem init --container` on the local base image (no registry is reachable)."""
    folder = tmp_path_factory.mktemp("projects") / "hello"
    init(folder, container=True, base=base_image())
    return folder


@pytest.fixture
async def gateway(project: Path, tmp_path: Path) -> AsyncIterator[Running]:
    async with serving(project, tmp_path / "state") as running:
        yield running


def settled(deployment: Deployment) -> bool:
    return bool(deployment.ready()) or deployment.last_error is not None


def events(gateway: Running, function: str) -> list[str]:
    return [e.message for e in gateway.platform.records.list_events(function, limit=100)]


def logged(gateway: Running, function: str) -> list[str]:
    return [line.text for line in gateway.platform.logbook.tail(function, 500)]


def remove_images(*tags: str | None) -> None:
    for tag in tags:
        if tag is not None:
            podman("rmi", "--force", tag, check=False)


async def test_an_unchanged_context_is_not_built_again_and_a_changed_one_is(
    project: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "hello"
    shutil.copytree(project, copy)
    events: list[ProgressEvent] = []
    builder = ImageBuilder(Podman(), on_progress=events.append)
    spec = load_stack(copy / "nuvem.yaml").functions["hello-hello-image"]
    tags = [await builder.ensure(spec)]
    try:
        assert next(e.phase for e in events) is Phase.BUILDING
        assert events[-1].phase is Phase.READY
        assert any(e.message.startswith("STEP 1/") for e in events)
        events.clear()
        # Loaded again (a new deploy, a restarted gateway): the tag is there, nothing builds.
        again = load_stack(copy / "nuvem.yaml").functions["hello-hello-image"]
        assert await builder.ensure(again) == tags[0]
        assert [e.phase for e in events] == [Phase.CACHED]
        # The stack file is in .containerignore: changing scaling builds nothing either.
        stack_text = (copy / "nuvem.yaml").read_text()
        (copy / "nuvem.yaml").write_text(stack_text + "    scaling: {min: 1, max: 2}\n")
        assert load_stack(copy / "nuvem.yaml").functions["hello-hello-image"].image_ref == tags[0]
        (copy / "functions.py").write_text(
            (copy / "functions.py").read_text().replace("hello, ", "hi, ")
        )
        changed = load_stack(copy / "nuvem.yaml").functions["hello-hello-image"]
        tags.append(await builder.ensure(changed))
        assert tags[1] != tags[0]
        assert events[-1].phase is Phase.READY
    finally:
        remove_images(*tags)


def stored_tags(repository: str) -> set[str]:
    """The tags podman's store holds of `repository`, read with podman itself."""
    listed = podman(
        "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"reference={repository}"
    )
    return {line for line in listed.split() if line.rpartition(":")[0] == repository}


def rolled_over(deployment: Deployment) -> bool:
    """Every replica is of the present spec and ready, the old ones gone (their containers
    removed), or the start failed."""
    current = deployment.current_ready()
    done = bool(current) and len(current) == len(deployment.replicas) >= deployment.desired
    return done or deployment.last_error is not None


async def test_three_sources_in_turn_leave_the_last_two_images_and_never_the_serving_one(
    gateway: Running, project: Path, tmp_path: Path
) -> None:
    """Each deploy of a changed source is a rolling update onto a new image; once its
    replicas serve, the images before the one it replaced are removed from the store."""
    copy = tmp_path / "pruned"
    shutil.copytree(project, copy)
    handler = (copy / "functions.py").read_text()
    # Its own repository: test runs in parallel share podman's store.
    name = f"pruned-{os.urandom(3).hex()}"
    repository = f"localhost/nuvem/{name}"
    stack = f"functions: {{{name}: {{root: {copy}, build: {{context: .}}, health: /_/health, "
    stack += "scaling: {min: 2, max: 2, mode: null}}}"
    tags: list[str] = []
    try:
        for version in range(3):
            (copy / "functions.py").write_text(handler.replace("hello, ", f"v{version}, "))
            (deployment,) = await gateway.deploy(stack, within=BUILD_WITHIN)
            await wait_until(
                functools.partial(rolled_over, deployment), BUILD_WITHIN, what="the update"
            )
            assert deployment.last_error is None, deployment.last_error
            tag = deployment.spec.image_ref
            assert tag is not None
            tags.append(tag)
            answered = await gateway.admin.get(f"/function/{name}/any?name=podman")
            assert answered.json() == {"message": f"v{version}, podman"}
            # The serving one and the one it replaced (whose replicas drained meanwhile).
            expected = set(tags[-2:])
            await wait_until(
                functools.partial(lambda want: stored_tags(repository) == want, expected),
                30,
                what=f"only {expected} stored",
            )
        assert len(set(tags)) == 3
        assert any(f"removed earlier images {tags[0]}" in m for m in logged(gateway, name))
        answered = await gateway.admin.get(f"/function/{name}/any?name=podman")
        assert answered.json() == {"message": "v2, podman"}
    finally:
        remove_images(*tags)


async def test_a_failed_build_names_the_containerfile_line_and_the_output(
    gateway: Running, tmp_path: Path
) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "Containerfile").write_text(
        f"FROM {base_image()}\n# a step that fails:\nRUN echo about to fail && false\n"
    )
    deployments = await gateway.deploy(
        f"functions: {{broken: {{root: {folder}, build: {{context: .}}}}}}", within=BUILD_WITHIN
    )
    error = deployments[0].last_error
    assert error is not None
    assert "function 'broken': building image localhost/nuvem/broken:" in error
    assert f"{folder / 'Containerfile'}:3: RUN echo about to fail && false" in error
    assert "about to fail" in error.split("(podman build failed")[1]
    assert "-->" not in error  # layer ids say nothing
    # It waits for a change rather than building the same source again and again.
    assert deployments[0].retry_at == float("inf")
    with pytest.raises(ImageBuildFailed):
        await ImageBuilder(Podman()).ensure(deployments[0].spec)


async def test_a_deploy_at_zero_replicas_builds_the_image_ahead_of_the_first_start(
    gateway: Running, project: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "idle"
    shutil.copytree(project, copy)
    (copy / "functions.py").write_text((copy / "functions.py").read_text() + "# idle\n")
    stopped = "scaling: {min: 0, mode: null}"
    (deployment,) = await gateway.deploy(
        f"functions: {{idle: {{root: {copy}, build: {{context: .}}, {stopped}}}}}"
    )
    image = deployment.spec.image_ref
    assert image is not None
    try:
        await wait_until(
            functools.partial(Podman().exists, image), BUILD_WITHIN, what=f"{image} built"
        )
        assert deployment.desired == 0
        assert not deployment.replicas  # built, and nothing started
    finally:
        remove_images(image)
    # A source that cannot build is an event at the deploy already.
    (copy / "Containerfile").write_text("FROM localhost/nuvem-test-no-such-base:1\n")
    await gateway.deploy(f"functions: {{idle: {{root: {copy}, build: {{context: .}}, {stopped}}}}}")
    await wait_until(
        lambda: any("idle is not ready to start" in m for m in events(gateway, "idle")),
        BUILD_WITHIN,
        what="the prepare_failed event",
    )


async def test_init_container_packaged_builds_on_the_gateway_and_answers_as_the_venv_one(
    gateway: Running, project: Path
) -> None:
    """`nuvem init --container` → `nuvem package` → the gateway deploys the bundle, builds
    the image from the bundled context → the image and the venv function answer alike."""
    bundle = stack_bundle.build(project / "nuvem.yaml", "2.0.0", skip=frozenset())
    names = set(bundle.manifest.files)
    assert {"Containerfile", ".containerignore", "sdk/nuvem/runtime/handler_server.py"} <= names
    data = bundle.archive.data
    digest = hashlib.sha256(data).hexdigest()
    uploaded = await gateway.admin.put(f"/system/bundles/{digest}", content=data)
    assert uploaded.status_code == 200, uploaded.text
    deployed = await gateway.admin.post(f"/system/bundles/{digest}/deploy", json={})
    assert deployed.status_code == 202, deployed.text
    deployments = gateway.platform.controller.deployments
    image = deployments["hello-hello-image"].spec.image_ref
    try:
        assert image is not None
        assert image.startswith("localhost/nuvem/hello-hello-image:2.0.0-")
        build = deployments["hello-hello-image"].spec.build
        assert build is not None
        assert "/bundles/code/" in build.context  # the gateway's own copy
        for deployment in (deployments["hello-hello"], deployments["hello-hello-image"]):
            await wait_until(
                functools.partial(settled, deployment), BUILD_WITHIN, what=f"{deployment.name}"
            )
            assert deployment.last_error is None, deployment.last_error
        answers = []
        for name in ("hello-hello", "hello-hello-image"):
            response = await gateway.admin.get(f"/function/{name}/any?name=podman")
            assert response.status_code == 200, response.text
            answers.append((response.headers["content-type"], response.content))
        assert answers[0] == answers[1] == ("application/json", b'{"message":"hello, podman"}')
        listed = (await gateway.admin.get("/system/function/hello-hello-image")).json()
        assert listed["image"] == image
    finally:
        remove_images(image)
