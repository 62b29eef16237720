"""The cluster token file: made once, 0600, and refused when unsafe or not a token."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from nuvem.cluster.token import ensure_token, read_token, token_path
from nuvem.errors import ClusterTokenError


def test_made_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    token = ensure_token(tmp_path)
    assert token.path == token_path(tmp_path)
    assert stat.S_IMODE(token.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(token.path.parent.stat().st_mode) == 0o700
    assert len(token.value) == 64
    assert int(token.value, 16) >= 0
    assert ensure_token(tmp_path) == token  # never replaced: joined nodes hold this one
    assert token.value not in repr(token)


def test_a_token_others_can_read_is_refused(tmp_path: Path) -> None:
    token = ensure_token(tmp_path)
    token.path.chmod(0o644)
    with pytest.raises(ClusterTokenError) as caught:
        read_token(token.path)
    assert "can be read by others (mode -rw-r--r--)" in caught.value.message
    assert caught.value.hint == f"chmod 600 {token.path}"
    assert caught.value.exit_code == 3


def test_a_missing_token_says_where_it_comes_from(tmp_path: Path) -> None:
    with pytest.raises(ClusterTokenError) as caught:
        read_token(tmp_path / "nope")
    assert caught.value.message == f"no cluster token at {tmp_path / 'nope'}"
    assert "nuvem node token" in caught.value.hint


@pytest.mark.parametrize("content", [b"", b"short\n", b"two words " * 8, b"\xff" * 40])
def test_a_file_without_a_token_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ClusterTokenError, match="does not hold a cluster token"):
        read_token(path)


def test_a_pasted_token_with_a_newline_is_read(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("ab" * 32 + "\n")
    path.chmod(0o600)
    assert read_token(path).value == "ab" * 32


def test_a_folder_is_not_a_token(tmp_path: Path) -> None:
    with pytest.raises(ClusterTokenError, match="is a folder"):
        read_token(tmp_path)
