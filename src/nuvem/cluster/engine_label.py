"""The node label that says which container engine a node runs image functions with."""

from __future__ import annotations

from typing import cast

from nuvem.config import Settings
from nuvem.runtime.engine_choice import detect
from nuvem.stack.container import CONTAINERS_LABEL, EngineName


def engine_label(labels: dict[str, str], choice: str) -> dict[str, str]:
    """`labels` plus the one that says which container engine this node runs image
    functions with (`--container-engine`: auto detects it, none leaves it out)."""
    if CONTAINERS_LABEL in labels or choice == "none":
        return labels
    if choice not in ("auto", "podman", "docker"):
        raise ValueError(
            f"--container-engine {choice!r} is not an engine; use auto, podman, docker or none"
        )
    found = detect(cast(EngineName, choice), Settings.from_env().docker_host)
    if found is None:
        if choice != "auto":
            raise ValueError(
                f"--container-engine {choice}: {choice} does not answer on this machine; "
                "install or start it, or use --container-engine none"
            )
        return labels
    return {**labels, CONTAINERS_LABEL: found}
