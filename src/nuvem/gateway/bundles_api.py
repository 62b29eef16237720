"""`/system/bundles`: upload a stack bundle, deploy its functions, roll a function back to a
version the gateway kept. Admin only, like all of /system.

A bundle's functions run from the gateway's own unpacked copy (`<state>/bundles/code/<sha>`),
so a gateway on another machine needs nothing of the client's disk. Each deployed spec
carries the bundle's name, version and digest as labels: the same bundle again is the same
spec (unchanged), and `nuvem ls` reads the version from the spec it shows.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from nuvem.cluster.bundle_store import BundleStore, Deployed, check_digest
from nuvem.cluster.stack_bundle import DIGEST_LABEL, NAME_LABEL, VERSION_LABEL, Manifest
from nuvem.errors import Conflict, NotFound, PayloadTooLarge
from nuvem.gateway.model_index import check_version_free
from nuvem.gateway.schemas import FunctionStatus
from nuvem.gateway.services import Services
from nuvem.gateway.system_api import Admin, validate_placement
from nuvem.stack.function import FunctionSpec
from nuvem.stack.loader import load_stack_text

router = APIRouter(prefix="/system", tags=["bundles"])
# The document states the rule; check_digest answers it, with a hint a pattern cannot give.
Digest = Annotated[
    str,
    Path(
        description="sha256 of the bundle, as sha256sum prints it",
        json_schema_extra={"pattern": "^[0-9a-f]{64}$"},
    ),
]


class BundleInfo(BaseModel):
    digest: str = Field(description="sha256 of the bundle archive: its address")
    name: str
    version: str
    functions: list[str]
    files: int = Field(description="files in the bundle, the manifest not counted")
    stored: Literal["new", "present"] = Field(description="new: this upload stored it")


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replace: bool = Field(default=False, description="take over functions another stack deployed")


class FunctionChange(BaseModel):
    name: str
    change: Literal["created", "updated", "unchanged"]


class BundleDeployed(BaseModel):
    digest: str
    name: str
    version: str
    functions: list[FunctionChange]


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(
        default=None, description="the version to return to; null: the one before the current"
    )


def store_of(platform: Services) -> BundleStore:
    settings = platform.settings
    return BundleStore(settings.state_dir / "bundles", platform.records, settings.bundle_keep)


def _info(manifest: Manifest, digest: str, new: bool) -> BundleInfo:
    return BundleInfo(
        digest=digest,
        name=manifest.name,
        version=manifest.version,
        functions=list(manifest.functions),
        files=len(manifest.files),
        stored="new" if new else "present",
    )


@router.get("/bundles/{digest}", response_model=BundleInfo)
def bundle_info(platform: Admin, digest: Digest) -> BundleInfo:
    """What a stored bundle holds; 404 when this gateway has not got it (upload it)."""
    return _info(store_of(platform).manifest(digest), digest, new=False)


_ZIP_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.put("/bundles/{digest}", response_model=BundleInfo, openapi_extra=_ZIP_BODY)
async def upload_bundle(platform: Admin, digest: Digest, request: Request) -> BundleInfo:
    """Store the bundle in the body (a zip from `nuvem package`) under its sha256 `digest`,
    which the client computed: 400 when the body's differs, 413 past the size limit."""
    check_digest(digest)
    limit = platform.settings.bundle_max_bytes
    too_large = PayloadTooLarge(
        f"the bundle is larger than this gateway's limit of {limit / 2**20:g} MiB",
        "keep weights and data out of function folders (models can fetch theirs by URL), "
        "or raise NUVEM_BUNDLE_MAX_MB on the gateway",
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    store = store_of(platform)
    manifest, new = await asyncio.to_thread(store.put, b"".join(chunks), digest)
    return _info(manifest, digest, new)


def bundle_specs(store: BundleStore, digest: str) -> tuple[Manifest, list[FunctionSpec]]:
    """The bundle's functions as they run from its unpacked folder, labelled with it."""
    manifest = store.manifest(digest)
    stack_file = store.folder(digest) / manifest.stack_file
    name = f"bundle {manifest.name} {manifest.version}: {manifest.stack_file}"
    stack = load_stack_text(stack_file.read_text(encoding="utf-8"), name, stack_file.parent)
    labels = {NAME_LABEL: manifest.name, VERSION_LABEL: manifest.version, DIGEST_LABEL: digest}
    specs = [
        spec.model_copy(update={"labels": {**spec.labels, **labels}})
        for spec in stack.functions.values()
    ]
    return manifest, specs


def _refuse_takeovers(platform: Services, manifest: Manifest, specs: list[FunctionSpec]) -> None:
    taken = []
    for spec in specs:
        current = platform.controller.deployments.get(spec.name)
        if current is None:
            continue
        owner = current.spec.labels.get(NAME_LABEL)
        if owner != manifest.name:
            where = f"bundle {owner}" if owner else f"folder {current.spec.root}"
            taken.append(f"{spec.name} (deployed from {where})")
    if taken:
        raise Conflict(
            f"bundle {manifest.name} would replace functions deployed otherwise: "
            + ", ".join(taken),
            "deploy with --replace to take them over, or rename the functions",
        )


def _running(platform: Services) -> dict[str, str]:
    """Each deployed function's bundle digest (those deployed from a bundle)."""
    found = {}
    for name, deployment in platform.controller.deployments.items():
        digest = deployment.spec.labels.get(DIGEST_LABEL)
        if digest:
            found[name] = digest
    return found


def _collect_garbage(platform: Services, store: BundleStore) -> None:
    running = _running(platform)
    history = store.history()
    kept = {name: versions for name, versions in history.items() if name in running}
    if kept != history:
        store.save_history(kept)  # removed functions keep no versions
    store.collect_garbage(set(running.values()))


@router.post("/bundles/{digest}/deploy", status_code=202, response_model=BundleDeployed)
def deploy_bundle(platform: Admin, digest: Digest, body: DeployRequest) -> BundleDeployed:
    """Deploy every function of a stored bundle; a function whose spec is the same as the
    running one (same bundle) is left alone, others roll over to the new version."""
    store = store_of(platform)
    manifest, specs = bundle_specs(store, check_digest(digest))
    if not body.replace:
        _refuse_takeovers(platform, manifest, specs)
    for spec in specs:
        validate_placement(spec, platform.engine.name)
        check_version_free(spec, platform.controller.deployments)
    changes = []
    for spec in specs:
        current = platform.controller.deployments.get(spec.name)
        if current is not None and current.spec == spec and current.last_error is None:
            changes.append(FunctionChange(name=spec.name, change="unchanged"))
        else:
            platform.controller.deploy(spec)
            change: Literal["created", "updated"] = "created" if current is None else "updated"
            changes.append(FunctionChange(name=spec.name, change=change))
        store.record(spec.name, Deployed(manifest.version, digest))
    _collect_garbage(platform, store)
    return BundleDeployed(
        digest=digest, name=manifest.name, version=manifest.version, functions=changes
    )


@router.post("/function/{name}/rollback", status_code=202, response_model=FunctionStatus)
def rollback_function(platform: Admin, name: str, body: RollbackRequest) -> FunctionStatus:
    """Return a function to a version the gateway kept (rolling, like any update)."""
    deployment = platform.controller.get(name)
    store = store_of(platform)
    kept = store.history().get(name, [])
    current = deployment.spec.labels.get(DIGEST_LABEL)
    versions = ", ".join(d.version for d in kept) or "none"
    if body.version is not None:
        matches = [d for d in kept if d.version == body.version]
        if not matches:
            raise NotFound(
                f"function {name!r} has no kept version {body.version!r} (kept: {versions})",
                f"pick one of those, or deploy that version's bundle again; the gateway keeps "
                f"the last {store.keep} (NUVEM_BUNDLE_KEEP)",
            )
        target = matches[-1]
    else:
        older = [d for d in kept if d.digest != current]
        if not older:
            raise Conflict(
                f"function {name!r} has no earlier version to roll back to (kept: {versions})",
                "deploy another version first; rollback returns to one deployed before",
            )
        target = older[-1]
    _, specs = bundle_specs(store, target.digest)
    spec = next((s for s in specs if s.name == name), None)
    if spec is None:
        raise NotFound(f"bundle {target.version} holds no function {name!r}")
    validate_placement(spec, platform.engine.name)
    status = FunctionStatus.of(platform.controller.deploy(spec), platform.registry)
    store.record(name, target)
    return status
