"""What a function served by a container image declares: the image (or the build that makes
it, stack/container_build.py), the port it listens on inside, the path that says it is
ready (docs/containers.md).

An image serves HTTP itself, so what only nuvem's own worker does (a handler, requirements
installed into a venv, batching, GPUs handed to the worker) does not apply to it: each is
an error naming the field to remove.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from nuvem.stack.function import FunctionSpec

# What runs image functions (the stack's container_engine:, runtime/engine_choice.py).
EngineName = Literal["auto", "podman", "docker"]
ENGINE_NAMES: tuple[EngineName, ...] = ("auto", "podman", "docker")
# The node label that says which engine a cluster node runs containers with (set by
# `nuvem node join`); image functions are placed only where it is.
CONTAINERS_LABEL = "nuvem.io/containers"
ANY_ENGINE = "in(docker,podman)"  # Ray's label selector for "either engine"
DEFAULT_PORT = 8080  # of-watchdog's, and so every OpenFaaS template's
# registry/name:tag or @digest, as podman and Docker accept them: no spaces, no scheme.
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$")


FIELDS = ("image", "port", "health")  # left out of the fingerprint when unset


def check_image(value: str | None) -> str | None:
    if value is not None and not _IMAGE.match(value):
        raise ValueError(
            f"image {value!r} is not an image reference; write registry/name:tag in "
            "lowercase, e.g. localhost/resize:1.4.0"
        )
    return value


def check_health(value: str | None) -> str | None:
    if value is not None and not value.startswith("/"):
        raise ValueError(f"health {value!r} is not a path; write one starting with /")
    return value


def check_container(spec: FunctionSpec) -> None:
    """Raise ValueError when `spec` mixes an image with what only a handler has."""
    if spec.image is not None and spec.build is not None:
        raise ValueError(
            "image and build are exclusive (build: makes the image, image: names one made "
            "elsewhere); remove one of them"
        )
    kind = "image" if spec.image is not None else "build"
    if not spec.serves_http:
        for name in ("port", "health"):
            if getattr(spec, name) is not None:
                raise ValueError(
                    f"{name} applies to container functions only; add image: (the image "
                    f"that listens there) or build:, or remove {name}"
                )
        return
    clashes = [
        ("model", spec.model is not None, "a model is served by nuvem's own worker"),
        ("handler", bool(spec.handler), "the image serves HTTP itself"),
        ("requirements", bool(spec.requirements), "install them in the image instead"),
        ("batching", spec.batching is not None, "batching happens in nuvem's own worker"),
        ("resources.gpu", spec.resources.gpu > 0, "container functions get no GPUs yet"),
    ]
    for name, present, why in clashes:
        if present:
            raise ValueError(f"{kind} and {name} are exclusive ({why}); remove one of them")
