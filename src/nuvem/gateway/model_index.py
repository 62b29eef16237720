"""Which function serves which model and version.

A model is every function whose `model:` has the same `name` (the function's own name when
none is given); each declares one version. The default version is the one marked
`default: true`, else the highest (numerically when versions are numbers).
"""

from __future__ import annotations

from collections.abc import Mapping

from nuvem.control.controller import Controller
from nuvem.control.deployment import Deployment
from nuvem.errors import Conflict, NotFound
from nuvem.stack.function import FunctionSpec


def model_name(deployment: Deployment) -> str | None:
    model = deployment.spec.model
    if model is None:
        return None
    return model.name or deployment.name


def _version_key(version: str) -> tuple[int, int, str]:
    return (1, int(version), "") if version.isdigit() else (0, 0, version)


class ModelIndex:
    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    def models(self) -> dict[str, dict[str, Deployment]]:
        """Model name -> version -> the function serving it."""
        found: dict[str, dict[str, Deployment]] = {}
        for deployment in self.controller.deployments.values():
            name = model_name(deployment)
            if name is not None and deployment.spec.model is not None:
                found.setdefault(name, {})[deployment.spec.model.version] = deployment
        return found

    def versions(self, name: str) -> dict[str, Deployment]:
        versions = self.models().get(name)
        if not versions:
            known = ", ".join(sorted(self.models())) or "none"
            raise NotFound(
                f"model {name!r} is not deployed (models: {known})",
                "declare `model:` on a function and deploy it with `nuvem deploy`",
            )
        return versions

    def resolve(self, name: str, version: str | None = None) -> tuple[str, Deployment]:
        """The version asked for (the default when None) and the function serving it."""
        versions = self.versions(name)
        if version is None or version == "":
            return self.default_version(versions), versions[self.default_version(versions)]
        deployment = versions.get(version)
        if deployment is None:
            known = ", ".join(sorted(versions, key=_version_key))
            raise NotFound(
                f"model {name!r} has no version {version!r} (versions: {known})",
                "ask for one of those versions, or omit it for the default",
            )
        return version, deployment

    @staticmethod
    def default_version(versions: dict[str, Deployment]) -> str:
        marked = [
            v for v, d in versions.items() if d.spec.model is not None and d.spec.model.default
        ]
        if marked:
            return max(marked, key=_version_key)
        return max(versions, key=_version_key)


def check_version_free(spec: FunctionSpec, deployments: Mapping[str, Deployment]) -> None:
    """Refuse a function whose model name and version another function already serves."""
    if spec.model is None:
        return
    name = spec.model.name or spec.name
    for other in deployments.values():
        theirs = other.spec.model
        if (
            other.name != spec.name
            and theirs is not None
            and model_name(other) == name
            and theirs.version == spec.model.version
        ):
            raise Conflict(
                f"model {name!r} version {spec.model.version!r} is already served by "
                f"function {other.name!r}",
                "give this function's model another version, or remove that function",
            )
