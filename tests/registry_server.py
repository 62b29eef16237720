"""A real image registry for tests: Debian's docker-registry (distribution 2.8) on a free
loopback port, plain HTTP, its storage in a temporary folder, stopped by its PID; open to
all, or checking passwords against an htpasswd file of bcrypt hashes (made with the
standard library's `crypt`, which the registry's Go bcrypt reads).

Skips with the reason when the binary is missing, and fails under CI (servers.missing).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from servers import missing
from support import block_until, die_with_parent, free_port, stop_process

START_SECONDS = 30.0


def htpasswd(accounts: Mapping[str, str]) -> str:
    """An htpasswd file's text: each user with a bcrypt hash of its password."""
    with warnings.catch_warnings():  # crypt is deprecated (gone in 3.13); bcrypt is its use
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    lines = [
        # Cost 4, bcrypt's least (2**4 rounds): the registry checks the hash on every
        # request, and the default cost 12 took about 20 s of a push/pull test here.
        f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}"
        for user, password in accounts.items()
    ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def registry_server(accounts: Mapping[str, str] | None = None) -> Iterator[str]:
    """host:port of a running registry that holds nothing yet; with `accounts` (user ->
    password) it lets in only those, by HTTP basic auth."""
    binary = shutil.which("docker-registry")
    if binary is None:
        missing("docker-registry", "run `make system-deps` or apt-get install docker-registry")
    folder = Path(tempfile.mkdtemp(prefix="nuvem-registry-"))
    address = f"127.0.0.1:{free_port()}"
    config = folder / "config.yml"
    auth = ""
    if accounts is not None:
        (folder / "htpasswd").write_text(htpasswd(accounts))
        auth = f"auth: {{htpasswd: {{realm: nuvem-tests, path: {folder / 'htpasswd'}}}}}\n"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {folder / 'data'}}}}}\n"
        f"http: {{addr: '{address}'}}\n" + auth
    )
    log = folder / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "serve", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text(errors='replace')}")
        try:
            # 401 without credentials when it checks them: it answers all the same.
            return httpx.get(f"http://{address}/v2/", timeout=1).status_code in (200, 401)
        except httpx.TransportError:
            return False

    try:
        block_until(answers, START_SECONDS, "docker-registry to start")
        yield address
    finally:
        stop_process(process, signal.SIGTERM)
        shutil.rmtree(folder, ignore_errors=True)
