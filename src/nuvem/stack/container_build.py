"""`BuildSpec`: an image function built from source, `build: {context, file, args}`
(docs/containers.md, "Build from source").

The stack file loader resolves `context` against the function's folder and sets `source`,
the digest of what the build reads (stack/build_context.py). The image is tagged with
it, so an unchanged context finds the image it built before, and a changed one changes
the spec: the function rolls over and its new replicas build the new image.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_TAG_TEXT = re.compile(r"[^A-Za-z0-9_.-]+")
REPOSITORY = "localhost/nuvem"  # built images are named REPOSITORY/<function>:<tag>
# The version a bundle deploy labels its functions with (cluster/stack_bundle.py).
BUNDLE_VERSION_LABEL = "nuvem.bundle.version"


class BuildSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    context: str = Field(
        default=".", description="folder the image is built from, relative to the function's"
    )
    file: str = Field(
        default="Containerfile", description="the Containerfile, relative to the context"
    )
    args: dict[str, str] = Field(
        default_factory=dict, description="build arguments (ARG), e.g. {BASE: localhost/py:3}"
    )
    source: str | None = Field(
        default=None,
        description="sha256 of the context's files, the Containerfile and the args; set by "
        "the stack file loader",
    )

    @field_validator("args", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        # YAML reads `VERSION: 2` as a number; a build argument is the text written.
        if isinstance(value, dict):
            return {
                str(k): ("true" if v is True else "false" if v is False else str(v))
                if isinstance(v, bool | int | float)
                else v
                for k, v in value.items()
            }
        return value

    @field_validator("file")
    @classmethod
    def _file(cls, value: str) -> str:
        if not value.strip() or value.startswith("/"):
            raise ValueError(
                f"file {value!r} is not a path inside the context; write it relative to the "
                "context, e.g. Containerfile"
            )
        return value


def image_tag(function: str, build: BuildSpec, version: str | None) -> str:
    """The image a build makes: named after the function, tagged with its version (a
    bundle's) and the source digest, so one tag never names two different builds."""
    digest = (build.source or "unhashed")[:12]
    label = _TAG_TEXT.sub("-", version).strip("-.")[:100] if version else ""
    return f"{REPOSITORY}/{function}:{label + '-' if label else ''}{digest}"
