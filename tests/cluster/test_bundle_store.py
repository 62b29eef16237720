"""The gateway's bundle store: checked on the way in, content-addressed, versions kept."""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nuvem.cluster import stack_bundle
from nuvem.cluster.bundle_store import BundleStore, Deployed, History, remember, unreferenced
from nuvem.errors import BadRequest
from nuvem.stores.memory import MemoryRecordStore


def bundle_of(folder: Path, version: str = "1.0.0") -> bytes:
    (folder / "app").mkdir(parents=True, exist_ok=True)
    (folder / "app" / "functions.py").write_text(f"def f(req):\n    return b'{version}'\n")
    (folder / "nuvem.yaml").write_text(
        "functions:\n  f:\n    handler: functions:f\n    root: app\n"
    )
    return stack_bundle.build(folder / "nuvem.yaml", version).archive.data


def zip_with(name: str, mode: int = 0o100644, body: bytes = b"x") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        archive.writestr(info, body)
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> BundleStore:
    return BundleStore(tmp_path / "state" / "bundles", MemoryRecordStore(), keep=3)


def test_a_bundle_is_stored_under_its_sha256_and_unpacked_once(
    store: BundleStore, tmp_path: Path
) -> None:
    data = bundle_of(tmp_path / "shop")
    manifest, new = store.put(data, sha(data))
    assert new
    assert manifest.functions == ("f",)
    assert store.archive(sha(data)).read_bytes() == data
    assert (store.folder(sha(data)) / "app" / "functions.py").read_text().endswith("b'1.0.0'\n")
    assert store.put(data, sha(data))[1] is False


def test_a_checksum_that_does_not_match_the_body_is_refused_naming_both(
    store: BundleStore, tmp_path: Path
) -> None:
    data = bundle_of(tmp_path / "shop")
    claimed = sha(b"something else")
    with pytest.raises(BadRequest, match=f"client sent sha256 {claimed}.*has sha256 {sha(data)}"):
        store.put(data, claimed)
    assert store.stored() == set()


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("../escape.py", 0o100644),
        ("app/../../escape.py", 0o100644),
        ("/etc/cron.d/evil", 0o100644),
        ("app/link", stat.S_IFLNK | 0o777),
        ("app/device", stat.S_IFCHR | 0o644),
        ("app/pipe", stat.S_IFIFO | 0o644),
    ],
)
def test_unsafe_entries_are_refused(store: BundleStore, name: str, mode: int) -> None:
    data = zip_with(name, mode)
    with pytest.raises(BadRequest, match="unsafe entry"):
        store.put(data, sha(data))
    assert not list(store.folder(sha(data)).parent.glob("*"))


def test_files_that_do_not_match_the_manifest_are_refused(
    store: BundleStore, tmp_path: Path
) -> None:
    data = bundle_of(tmp_path / "shop")
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            body = source.read(info)
            target.writestr(info, b"tampered" if info.filename == "app/functions.py" else body)
    tampered = buffer.getvalue()
    with pytest.raises(BadRequest, match=r"do not match its manifest: app/functions\.py"):
        store.put(tampered, sha(tampered))
    assert not store.folder(sha(tampered)).exists()


def test_an_archive_without_a_manifest_is_refused(store: BundleStore) -> None:
    data = zip_with("app/functions.py")
    with pytest.raises(BadRequest, match=r"no manifest\.json"):
        store.put(data, sha(data))


def test_bundles_no_function_keeps_are_collected(store: BundleStore, tmp_path: Path) -> None:
    digests = []
    for n in range(5):
        data = bundle_of(tmp_path / "shop", f"1.0.{n}")
        store.put(data, sha(data))
        store.record("f", Deployed(f"1.0.{n}", sha(data)))
        digests.append(sha(data))
    assert [d.version for d in store.history()["f"]] == ["1.0.2", "1.0.3", "1.0.4"]
    gone = store.collect_garbage(running={digests[4]})
    assert sorted(gone) == sorted(digests[:2])
    assert store.stored() == set(digests[2:])
    assert not store.folder(digests[0]).exists()


versions = st.lists(st.sampled_from("abcdef"), max_size=30)


@given(versions, st.integers(min_value=1, max_value=6))
def test_remember_keeps_the_newest_distinct_versions(order: list[str], keep: int) -> None:
    history: History = {}
    for v in order:
        history = remember(history, "f", Deployed(v, v * 64), keep)
    kept = [d.version for d in history.get("f", [])]
    assert len(kept) <= keep
    assert len(set(kept)) == len(kept)
    if order:
        assert kept[-1] == order[-1]
        newest_first = list(dict.fromkeys(reversed(order)))
        assert kept == list(reversed(newest_first[:keep]))


def test_a_running_bundle_is_never_unreferenced() -> None:
    history = {"f": [Deployed("1", "a" * 64)]}
    assert unreferenced({"a" * 64, "b" * 64, "c" * 64}, history, {"b" * 64}) == {"c" * 64}
