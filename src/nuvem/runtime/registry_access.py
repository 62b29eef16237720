"""`RegistryAccess`: what an engine needs to push to and pull from the stack's registry.

Made once at the gateway from the stack's `registry:` and the credentials in its
environment or auth file, then handed to every engine that pulls, a cluster node's
included (over the cluster's token-authenticated link), so a node needs no credentials
of its own. An auth file is read here, in podman's and Docker's auth.json format.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path

from nuvem.config import Settings
from nuvem.errors import BadRequest
from nuvem.stack.function import FunctionSpec
from nuvem.stack.registry import RegistrySpec


@dataclass(frozen=True, slots=True)
class RegistryAccess:
    address: str  # host[:port], as image references name it
    tls_verify: bool = True  # False: plain HTTP, or a certificate not checked
    username: str = ""
    password: str = field(default="", repr=False)

    def owns(self, image: str) -> bool:
        return image.startswith(self.address + "/")

    def tag(self, local: str) -> str:
        """The name a locally built image (localhost/nuvem/NAME:TAG) has in the registry."""
        return f"{self.address}/{local.removeprefix('localhost/')}"

    def auth_json(self) -> str:
        """Its credentials as podman's auth.json; "" without any."""
        if not self.username:
            return ""
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return json.dumps({"auths": {self.address: {"auth": token}}})


def replica_image(spec: FunctionSpec, registry: RegistryAccess | None) -> str | None:
    """The image `spec`'s replicas run: its `image:` as written, or the tag its build makes,
    by the registry's name when the stack has one (the build tags it so, and pushes it: no
    `localhost/` name of it exists anywhere). None for a handler function."""
    ref = spec.image_ref
    if ref is not None and spec.build is not None and registry is not None:
        return registry.tag(ref)
    return ref


def registry_access(spec: RegistrySpec | None, settings: Settings) -> RegistryAccess | None:
    """The access the stack's registry asks for; None without one. The environment's
    credentials win over the auth file's."""
    if spec is None:
        return None
    username, password = settings.registry_username, settings.registry_password
    if not username and spec.auth_file is not None:
        username, password = _from_auth_file(Path(spec.auth_file).expanduser(), spec.address)
    return RegistryAccess(spec.address, spec.tls_verify, username, password)


def _from_auth_file(path: Path, address: str) -> tuple[str, str]:
    fix = (
        f"write it with `podman login --authfile {path} {address}`, or set "
        "NUVEM_REGISTRY_USERNAME and NUVEM_REGISTRY_PASSWORD instead"
    )
    try:
        auths = json.loads(path.read_text()).get("auths", {})
    except (OSError, ValueError, AttributeError) as error:
        raise BadRequest(f"registry.auth_file {str(path)!r} cannot be read: {error}", fix) from None
    entry = auths.get(address) if isinstance(auths, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("auth"), str):
        raise BadRequest(
            f"registry.auth_file {str(path)!r} holds no credentials for {address}", fix
        )
    try:
        username, colon, password = base64.b64decode(entry["auth"]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        colon = ""
    if not colon:
        raise BadRequest(
            f"registry.auth_file {str(path)!r}: the entry for {address} is not "
            "base64 of user:password",
            fix,
        )
    return username, password


# What podman and Docker say, and what to do about it: the first that matches is the hint.
_HINTS = (
    (
        ("manifest unknown", "not found", "name unknown"),
        "the registry {registry} does not hold {image}: push it there (`podman push {image}`), "
        "or fix the image's name",
    ),
    (
        ("connection refused", "no such host", "i/o timeout", "network is unreachable"),
        "the registry {registry} does not answer: start it, or fix registry.address in the "
        "stack file (and check that this machine reaches it)",
    ),
    (
        ("unauthorized", "authentication required", "denied"),
        "the registry {registry} refused the credentials: set NUVEM_REGISTRY_USERNAME and "
        "NUVEM_REGISTRY_PASSWORD, or registry.auth_file, to an account that may push and pull",
    ),
    (
        ("http response to https client",),
        "the registry {registry} speaks plain HTTP: set registry.tls_verify: false in the "
        "stack file (for a loopback or private-network registry)",
    ),
    (
        ("certificate", "x509"),
        "the registry {registry}'s certificate is not trusted here: install its CA, or set "
        "registry.tls_verify: false",
    ),
)


def registry_hint(error: str, image: str, registry: str) -> str:
    """The fix for a push or pull of `image` at `registry` that failed with `error`."""
    lowered = error.lower()
    for needles, hint in _HINTS:
        if any(needle in lowered for needle in needles):
            return hint.format(image=image, registry=registry)
    return (
        f"check that {registry} is reachable from this machine and holds {image} "
        "(`podman pull` it by hand to see why not)"
    )
