"""fetch() against a real HTTP server on a loopback port."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")

from nuvem.errors import ModelError
from nuvem.models.weights import fetch
from support import FileServer, file_server, free_port

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and a bit: more than one chunk
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    # A proxy from the environment would swallow requests meant for loopback.
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    with file_server() as files:
        yield files


def test_downloads_once_then_uses_the_cache(server: FileServer, tmp_path: Path) -> None:
    server.files["/models/weights.pth"] = PAYLOAD
    url = f"{server.url}/models/weights.pth"
    first = fetch(url, tmp_path / "cache", sha256=DIGEST, progress=True)
    assert first == tmp_path / "cache" / "weights.pth"
    assert first.read_bytes() == PAYLOAD
    second = fetch(url, tmp_path / "cache", sha256=DIGEST, progress=False)
    assert second == first
    assert server.requests["/models/weights.pth"] == 1
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["weights.pth"]


def test_torchvision_file_names_carry_the_digest(server: FileServer, tmp_path: Path) -> None:
    name = f"resnet18-{DIGEST[:8]}.pth"
    server.files[f"/{name}"] = PAYLOAD
    assert fetch(f"{server.url}/{name}", tmp_path, progress=False).read_bytes() == PAYLOAD


def test_digest_in_name_mismatch_is_refused(server: FileServer, tmp_path: Path) -> None:
    server.files["/resnet18-deadbeef.pth"] = PAYLOAD
    with pytest.raises(ModelError, match=r"checksum mismatch .* expected sha256 deadbeef, got"):
        fetch(f"{server.url}/resnet18-deadbeef.pth", tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == [], "the bad download must be deleted"


def test_explicit_sha256_mismatch_then_retry(server: FileServer, tmp_path: Path) -> None:
    server.files["/w.safetensors"] = PAYLOAD
    url = f"{server.url}/w.safetensors"
    with pytest.raises(ModelError, match="checksum mismatch") as info:
        fetch(url, tmp_path, sha256="0" * 64, progress=False)
    assert "deleted" in info.value.hint
    assert list(tmp_path.iterdir()) == []
    assert fetch(url, tmp_path, sha256=DIGEST.upper(), progress=False).read_bytes() == PAYLOAD
    assert server.requests["/w.safetensors"] == 2


def test_corrupt_cached_file_is_downloaded_again(server: FileServer, tmp_path: Path) -> None:
    server.files["/w.pth"] = PAYLOAD
    (tmp_path / "w.pth").write_bytes(b"left over from a broken copy")
    path = fetch(f"{server.url}/w.pth", tmp_path, sha256=DIGEST, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.requests["/w.pth"] == 1


def test_http_error(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="HTTP 404") as info:
        fetch(f"{server.url}/missing.pth", tmp_path, progress=False)
    assert str(tmp_path / "missing.pth") in info.value.hint
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/w.pth"  # nothing listens there
    with pytest.raises(ModelError, match=re.escape(f"downloading {url} failed")):
        fetch(url, tmp_path, progress=False, timeout=5)


@pytest.mark.parametrize(
    ("url", "sha256", "message"),
    [
        ("ftp://example.com/w.pth", None, "cannot fetch"),
        ("https://example.com/models/", None, "cannot tell a file name"),
        ("https://example.com/w.pth", "not-hex", "invalid sha256"),
    ],
)
def test_bad_arguments(tmp_path: Path, url: str, sha256: str | None, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        fetch(url, tmp_path, sha256=sha256, progress=False)
