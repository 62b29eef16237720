"""The gateway's bundles, content-addressed under the state folder, and which versions of
each function it keeps for rollbacks.

`<state>/bundles/<sha256>` is the archive as uploaded; `<state>/bundles/code/<sha256>/` is it
unpacked, once, and never written again, so a function's `root` can point into it and a
cluster node can be sent exactly those files. Which bundles each function was deployed from
lives in the records (setting `bundles.history`), newest last; a bundle no function keeps
and none runs from is deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from nuvem.cluster import code_bundle
from nuvem.cluster.stack_bundle import DIGEST_LABEL, MANIFEST, Manifest, files_digest
from nuvem.errors import BadRequest, NotFound
from nuvem.stack.function import FunctionSpec
from nuvem.stores.records import RecordStore

HISTORY_SETTING = "bundles.history"
KEEP = 5
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Deployed:
    """One version of a function the gateway keeps: the bundle it came from."""

    version: str
    digest: str  # the archive's sha256


History = dict[str, list[Deployed]]  # function -> versions kept, oldest first


def check_digest(text: str) -> str:
    if not _SHA256.fullmatch(text):
        raise BadRequest(
            f"bundle digest {text!r} is not a sha256 in lowercase hex (64 characters)",
            "send the sha256 of the bundle file, as `sha256sum` prints it",
        )
    return text


def remember(history: History, function: str, deployed: Deployed, keep: int) -> History:
    """`history` with `deployed` as the function's newest version, at most `keep` kept."""
    kept = [d for d in history.get(function, []) if d != deployed] + [deployed]
    return {**history, function: kept[-max(keep, 1) :]}


def unreferenced(stored: set[str], history: History, running: set[str]) -> set[str]:
    """The stored bundles that no kept version names and no function runs from."""
    kept = {d.digest for versions in history.values() for d in versions}
    return stored - kept - running


def stored_code(spec: FunctionSpec) -> tuple[code_bundle.CodeBundle, str] | None:
    """A bundle-deployed function's code as the store holds it: the stored archive (already
    verified, never re-zipped) and the function's folder inside it; None for a function
    deployed from a folder, which is packed as it is."""
    digest = spec.labels.get(DIGEST_LABEL, "")
    parts = Path(spec.root).parts
    for i in range(1, len(parts) - 1):
        if parts[i] == "code" and parts[i + 1] == digest:
            archive = Path(*parts[:i]) / digest
            try:
                data = archive.read_bytes()
            except OSError:
                return None
            return code_bundle.CodeBundle(digest, data, 0), "/".join(parts[i + 2 :])
    return None


class BundleStore:
    def __init__(self, root: Path, records: RecordStore, keep: int = KEEP) -> None:
        self.root = root
        self.records = records
        self.keep = keep

    def archive(self, digest: str) -> Path:
        return self.root / digest

    def folder(self, digest: str) -> Path:
        return self.root / "code" / digest

    def has(self, digest: str) -> bool:
        return self.folder(check_digest(digest)).is_dir()

    def put(self, data: bytes, claimed: str) -> tuple[Manifest, bool]:
        """Store and unpack the bundle `data` the client says has sha256 `claimed`: its
        manifest, and whether it was new. BadRequest when the bytes do not match the claim,
        the archive holds an unsafe entry, or its files do not match its manifest."""
        check_digest(claimed)
        actual = hashlib.sha256(data).hexdigest()
        if actual != claimed:
            raise BadRequest(
                f"bundle checksum mismatch: the client sent sha256 {claimed}, the body "
                f"received has sha256 {actual}",
                "upload the bundle again (it was changed or cut on the way), or send the "
                "sha256 of the file you upload",
            )
        if self.has(claimed):
            return self.manifest(claimed), False
        self.root.mkdir(parents=True, exist_ok=True)
        folder = code_bundle.unpack(data, claimed, self.root / "code")
        try:
            manifest = self._verified(folder)
        except BadRequest:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        # Two uploads of one bundle at once each write their own file, then one wins.
        partial = self.root / f".{claimed}.{os.getpid()}.{os.urandom(4).hex()}.partial"
        partial.write_bytes(data)
        partial.replace(self.archive(claimed))
        return manifest, True

    def manifest(self, digest: str) -> Manifest:
        path = self.folder(check_digest(digest)) / MANIFEST
        try:
            return Manifest.from_json(path.read_bytes())
        except FileNotFoundError:
            raise NotFound(
                f"bundle {digest[:12]} is not stored on this gateway",
                "upload it first: `nuvem deploy` does",
            ) from None

    def _verified(self, folder: Path) -> Manifest:
        if not (folder / MANIFEST).is_file():
            raise BadRequest(
                f"the bundle holds no {MANIFEST}", "build the bundle with `nuvem package`"
            )
        manifest = self.manifest(folder.name)
        found = {
            p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST
        }
        if found != manifest.files or files_digest(found) != manifest.digest:
            odd = sorted(set(found.items()) ^ set(manifest.files.items()))
            named = ", ".join(sorted({name for name, _ in odd})) or "the listing's digest"
            raise BadRequest(
                f"bundle files do not match its manifest: {named}",
                "build the bundle again with `nuvem package`; do not edit it by hand",
            )
        return manifest

    def history(self) -> History:
        text = self.records.get_setting(HISTORY_SETTING)
        if not text:
            return {}
        data = json.loads(text)
        return {name: [Deployed(**d) for d in kept] for name, kept in data.items()}

    def save_history(self, history: History) -> None:
        data = {name: [asdict(d) for d in kept] for name, kept in sorted(history.items())}
        self.records.set_setting(HISTORY_SETTING, json.dumps(data, sort_keys=True))

    def record(self, function: str, deployed: Deployed) -> None:
        self.save_history(remember(self.history(), function, deployed, self.keep))

    def forget(self, function: str) -> None:
        history = self.history()
        if history.pop(function, None) is not None:
            self.save_history(history)

    def stored(self) -> set[str]:
        if not self.root.is_dir():
            return set()
        code = self.root / "code"
        folders = list(code.iterdir()) if code.is_dir() else []
        return {p.name for p in [*self.root.iterdir(), *folders] if _SHA256.fullmatch(p.name)}

    def collect_garbage(self, running: set[str]) -> list[str]:
        """Delete the bundles no function keeps or runs from; their digests."""
        gone = sorted(unreferenced(self.stored(), self.history(), running))
        for digest in gone:
            shutil.rmtree(self.folder(digest), ignore_errors=True)
            self.archive(digest).unlink(missing_ok=True)
        return gone
