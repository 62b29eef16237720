"""The cluster token: the one secret every Ray process of the cluster must present.

Ray reads it from a file (`RAY_AUTH_TOKEN_PATH`). nuvem makes that file once, in the state
folder, readable by its owner only: `ray get-auth-token --generate` would write one that
every user of the machine can read. A token file that others may read is refused, as ssh
refuses such a private key, since anyone who reads it controls the whole cluster.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from nuvem.errors import ClusterTokenError

TOKEN_FILE = Path("cluster") / "token"
_MIN_LENGTH = 32  # Ray's own tokens are 64 hex characters; anything shorter is guessable


@dataclass(frozen=True, slots=True)
class ClusterToken:
    """A validated token and the file Ray reads it from."""

    path: Path
    value: str

    def __repr__(self) -> str:  # never print the secret by accident
        return f"ClusterToken(path={str(self.path)!r})"


def token_path(state_dir: Path) -> Path:
    return state_dir / TOKEN_FILE


def ensure_token(state_dir: Path) -> ClusterToken:
    """The state folder's token, made on first use as a 0600 file of 256 random bits."""
    path = token_path(state_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _create(path, secrets.token_hex(32))
    return read_token(path)


def _create(path: Path, value: str) -> None:
    # O_EXCL: two gateways starting at once must not each write a different token.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as out:
        out.write(value)
        out.flush()
        os.fsync(out.fileno())


def read_token(path: Path) -> ClusterToken:
    """Read and check a token file; ClusterTokenError says what is wrong and how to fix it."""
    path = path.expanduser().absolute()
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ClusterTokenError(
            f"no cluster token at {path}",
            hint="copy the token from the head (`nuvem node token` there) into this file, "
            "readable by you only (chmod 600)",
        ) from None
    except IsADirectoryError:
        raise ClusterTokenError(
            f"{path} is a folder, not a token file", hint="pass the token file itself"
        ) from None
    except PermissionError:
        raise ClusterTokenError(
            f"cannot read the cluster token at {path}: permission denied",
            hint="run as the user who owns it, or fix its owner",
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ClusterTokenError(
            f"the cluster token at {path} can be read by others (mode {stat.filemode(mode)}); "
            "whoever reads it controls the cluster",
            hint=f"chmod 600 {path}",
        )
    try:
        value = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        value = ""
    if len(value) < _MIN_LENGTH or not value.isprintable() or any(c.isspace() for c in value):
        raise ClusterTokenError(
            f"{path} does not hold a cluster token (one line of at least {_MIN_LENGTH} "
            "characters without spaces)",
            hint="copy it again from `nuvem node token` on the head",
        )
    return ClusterToken(path, value)
