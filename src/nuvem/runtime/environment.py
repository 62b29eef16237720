"""Per-function Python environments: one virtual environment per distinct set of requirements.

A function without requirements runs on the platform's own interpreter. A function with
requirements gets a virtual environment keyed by their hash, built once and shared by every
function that asks for the same requirements. Layout under the state directory `root`:

    sdk/nuvem         symlink to the installed nuvem package, the only platform code a
                      worker may see (a `.pth` file in each environment points here)
    envs/<key>/       a ready environment; its marker file says for which requirements
                      and which Python it was built
    envs/<key>.lock   serialises the builds of <key> across processes (flock)
    envs/<key>.tmp/   a build in progress, or one a crash left behind
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import platform
import shutil
import sys
import sysconfig
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import nuvem
from nuvem.errors import EnvironmentBuildError, RequirementsUnresolvable
from nuvem.stack.function import FunctionSpec

logger = logging.getLogger(__name__)

MARKER = ".nuvem-environment.json"
REQUIREMENTS_FILE = "requirements.txt"
SDK_PTH = "_nuvem_sdk.pth"
TAIL_LINES = 20
UNRESOLVABLE_MEMORY = 30.0  # seconds a failed resolution answers for its key
# The check a fresh environment must pass: the worker's modules resolve through the sdk
# folder, and a user requirement does not shadow them with a PyPI package called nuvem.
_SDK_CHECK = "import nuvem, nuvem.runtime.worker; print(nuvem.__file__)"
# These would let the platform's own paths leak into the environment's interpreter.
_LEAKY_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


class Phase(StrEnum):
    CREATING = "creating"  # the empty virtual environment is being created
    INSTALLING = "installing"  # the installer runs; each of its output lines is an event
    BUILDING = "building"  # an image build runs; each of its output lines is an event
    READY = "ready"  # a new environment was built and can serve workers
    CACHED = "cached"  # an environment built earlier for the same requirements is reused
    FAILED = "failed"  # the build failed and left nothing behind; ensure() raises


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    function: str
    key: str
    phase: Phase
    message: str
    elapsed: float  # seconds since ensure() was called, waiting for a lock included
    what: str = "environment"  # or "image": what is being made


@dataclass(frozen=True, slots=True)
class Environment:
    """What a worker needs to start: the interpreter, and the environment it belongs to."""

    key: str | None
    python: Path
    path: Path | None


def find_uv() -> str | None:
    """The uv installed with the platform (pinned by its dependencies), else one on PATH."""
    # Not resolved: sys.executable is a symlink into the base Python, uv sits beside the link.
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("uv")


DEFAULT_UV = find_uv()


def _python_identity() -> dict[str, str]:
    # An upgrade of the base interpreter changes one of these, and its environments must be
    # rebuilt: their compiled extensions and the `python` symlink belong to the old one.
    return {"python": sys.version, "interpreter": os.path.realpath(sys.executable)}


def _canonical(requirements: Iterable[str]) -> list[str]:
    # The same normalisation as FunctionSpec.environment_key(), so the marker matches the key.
    return sorted(r.strip() for r in requirements)


def _env_python(path: Path) -> Path:
    return path / "bin" / "python"


class _StepError(Exception):
    def __init__(self, step: str, detail: str, tail: Sequence[str]) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail
        self.tail = list(tail)


class EnvironmentBuilder:
    """Builds and caches the virtual environments of functions under `root`."""

    def __init__(
        self,
        root: Path,
        *,
        uv: str | None = DEFAULT_UV,
        on_progress: Callable[[ProgressEvent], None] | None = None,
    ) -> None:
        self.root = Path(root).absolute()
        self.envs = self.root / "envs"
        self.sdk = self.root / "sdk"
        self.uv = uv
        self.on_progress = on_progress
        self._locks: dict[str, asyncio.Lock] = {}
        # Keys whose requirements the index cannot satisfy, with when that was found: the
        # other replicas starting at the same moment fail at once instead of rebuilding.
        self._unresolvable: dict[str, tuple[float, RequirementsUnresolvable]] = {}

    def path_of(self, key: str) -> Path:
        return self.envs / key

    async def ensure(self, spec: FunctionSpec) -> Environment:
        """The environment `spec` runs in, built first when no ready one matches."""
        key = spec.environment_key()
        if key is None:
            return Environment(key=None, python=Path(sys.executable), path=None)
        started = time.monotonic()
        requirements = _canonical(spec.requirements)
        self.envs.mkdir(parents=True, exist_ok=True)
        # Refreshed on every call: the platform may have moved or been upgraded since the
        # environment was built, and the environment only knows the sdk folder.
        self._link_sdk()
        path = self.path_of(key)
        if not self._is_ready(path, requirements):
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock, _file_lock(self.envs / f"{key}.lock"):
                # Whoever held the lock before us may have built it meanwhile.
                if not self._is_ready(path, requirements):
                    found = self._unresolvable.get(key)
                    if found is not None and time.monotonic() - found[0] < UNRESOLVABLE_MEMORY:
                        raise found[1]
                    try:
                        await self._build(spec, key, requirements, started)
                    except RequirementsUnresolvable as error:
                        self._unresolvable[key] = (time.monotonic(), error)
                        raise
                    return self._environment(key)
        self._report(spec.name, key, Phase.CACHED, "environment already built", started)
        return self._environment(key)

    async def prune(self, keep: Iterable[str]) -> list[str]:
        """Remove the environments whose key is not in `keep`, and leftovers of crashed
        builds; skip any key that is being built right now. Returns the removed keys."""
        keep = set(keep)
        if not self.envs.is_dir():
            return []
        by_key: dict[str, list[Path]] = {}
        for entry in self.envs.iterdir():
            by_key.setdefault(entry.name.split(".", 1)[0], []).append(entry)
        removed: list[str] = []
        for key, entries in sorted(by_key.items()):
            lock_name = f"{key}.lock"
            if key in keep:  # only the leftovers of crashed builds and replaced environments
                doomed = [e for e in entries if e.name not in (key, lock_name)]
                if not doomed:
                    continue
            else:
                doomed = [e for e in entries if e.name != lock_name]
            lock_path = self.envs / lock_name
            fd = _try_lock(lock_path)
            if fd is None:
                continue  # a build holds it; that key is in use after all
            try:
                for entry in doomed:
                    await asyncio.to_thread(_remove, entry)
                if key not in keep:
                    # Unlinked while held: a process that opened the old file notices the
                    # inode changed once it gets the lock, and locks the new file instead.
                    lock_path.unlink(missing_ok=True)
                    if any(e.name == key for e in entries):
                        removed.append(key)
            finally:
                os.close(fd)
        return removed

    def _environment(self, key: str) -> Environment:
        path = self.path_of(key)
        return Environment(key=key, python=_env_python(path), path=path)

    def _is_ready(self, path: Path, requirements: list[str]) -> bool:
        try:
            marker = json.loads((path / MARKER).read_text())
        except (OSError, ValueError):
            return False
        identity = _python_identity()
        return (
            isinstance(marker, dict)
            and marker.get("requirements") == requirements
            and all(marker.get(name) == value for name, value in identity.items())
            and _env_python(path).exists()
        )

    def _link_sdk(self) -> None:
        target = Path(nuvem.__file__).resolve().parent
        link = self.sdk / "nuvem"
        with contextlib.suppress(OSError):
            if link.readlink() == target:
                return
        self.sdk.mkdir(parents=True, exist_ok=True)
        # Replaced atomically: workers of other environments may be importing through it.
        staging = self.sdk / f".nuvem.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        staging.symlink_to(target, target_is_directory=True)
        os.replace(staging, link)

    def _report(self, function: str, key: str, phase: Phase, message: str, started: float) -> None:
        if self.on_progress is None:
            return
        event = ProgressEvent(function, key, phase, message, time.monotonic() - started)
        try:
            self.on_progress(event)
        except Exception:  # a broken progress display must not fail the build it reports
            logger.exception("progress callback failed on %s", event)

    async def _build(
        self, spec: FunctionSpec, key: str, requirements: list[str], started: float
    ) -> None:
        final = self.path_of(key)
        staging = self.envs / f"{key}.tmp"
        await asyncio.to_thread(_remove, staging)  # a crashed build's leftovers

        def installer_line(line: str) -> None:
            self._report(spec.name, key, Phase.INSTALLING, line, started)

        try:
            self._report(
                spec.name,
                key,
                Phase.CREATING,
                f"creating a virtual environment with Python {platform.python_version()}",
                started,
            )
            await self._create(staging)
            self._report(
                spec.name, key, Phase.INSTALLING, f"installing {', '.join(requirements)}", started
            )
            requirements_file = staging / REQUIREMENTS_FILE
            requirements_file.write_text("".join(f"{r}\n" for r in requirements))
            await self._install(staging, final, requirements_file, installer_line)
            await self._connect_sdk(staging)
            marker = {"requirements": requirements, **_python_identity(), "key": key}
            (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            await asyncio.to_thread(_swap, staging, final)
        except _StepError as failure:
            await asyncio.to_thread(_remove, staging)
            message = f"{failure.step} failed ({failure.detail})"
            self._report(spec.name, key, Phase.FAILED, message, started)
            raise _build_error(spec, requirements, failure) from None
        except BaseException:
            # Cancelled or crashed: synchronous cleanup, since a second cancellation could
            # interrupt an awaited one.
            _remove(staging)
            raise
        self._report(spec.name, key, Phase.READY, "environment built", started)

    async def _create(self, staging: Path) -> None:
        step = "creating the virtual environment"
        if self.uv is not None:
            # Relocatable, because it is renamed from <key>.tmp to <key> once complete.
            argv = [self.uv, "venv", "--relocatable", "--color", "never", "--no-progress"]
            await self._run(step, [*argv, "--python", sys.executable, str(staging)])
        else:
            await self._run(step, [sys.executable, "-m", "venv", str(staging)])

    async def _install(
        self,
        staging: Path,
        final: Path,
        requirements_file: Path,
        on_line: Callable[[str], None],
    ) -> None:
        step = "installing the requirements"
        python = str(_env_python(staging))
        # Through a requirements file, so option lines (--extra-index-url ...) work as in
        # any requirements.txt and no requirement can be mistaken for an installer flag.
        if self.uv is not None:
            argv = [self.uv, "pip", "install", "--color", "never", "--no-progress"]
            await self._run(
                step, [*argv, "--python", python, "-r", str(requirements_file)], on_line
            )
            return
        argv = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        await self._run(
            step, [*argv, "--progress-bar", "off", "-r", str(requirements_file)], on_line
        )
        # venv and pip write the staging path into bin/; the scripts must outlive the rename.
        await asyncio.to_thread(_retarget_scripts, staging / "bin", staging, final)

    async def _connect_sdk(self, staging: Path) -> None:
        site_packages = Path(
            sysconfig.get_path("purelib", "venv", vars={"base": staging, "platbase": staging})
        )
        (site_packages / SDK_PTH).write_text(f"{self.sdk}\n")
        lines = await self._run(
            "importing the nuvem SDK", [str(_env_python(staging)), "-c", _SDK_CHECK]
        )
        found = lines[-1] if lines else ""
        if not found.startswith(f"{self.sdk}{os.sep}"):
            raise _StepError(
                "importing the nuvem SDK",
                f"`import nuvem` resolves to {found!r} instead of {self.sdk}; a requirement "
                "installs a package named nuvem, remove it",
                lines,
            )

    async def _run(
        self, step: str, argv: list[str], on_line: Callable[[str], None] | None = None
    ) -> list[str]:
        """Run one build step; return the last lines of its output, raise _StepError."""
        environ = {k: v for k, v in os.environ.items() if k not in _LEAKY_VARIABLES}
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.envs,
                env=environ,
            )
        except OSError as exc:
            raise _StepError(step, f"cannot run {argv[0]}: {exc.strerror}", []) from exc
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        try:
            assert process.stdout is not None
            async for line in _lines(process.stdout):
                tail.append(line)
                if on_line is not None:
                    on_line(line)
            code = await process.wait()
        except BaseException:
            # Cancelled (the gateway is stopping): the installer must not outlive the build.
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.shield(process.wait())
            raise
        if code != 0:
            raise _StepError(step, f"{Path(argv[0]).name} exited with code {code}", tail)
        return list(tail)


def _build_error(
    spec: FunctionSpec, requirements: list[str], failure: _StepError
) -> EnvironmentBuildError:
    output = "\n".join(f"    {line}" for line in failure.tail) or "    (no output)"
    message = (
        f"building the environment of function {spec.name!r} failed while "
        f"{failure.step} ({failure.detail}); requirements: {', '.join(requirements)}\n"
        f"last lines of output:\n{output}"
    )
    if _unresolvable(failure.tail):
        return RequirementsUnresolvable(
            message,
            "the package index has no such package or version: check the spelling and "
            "version of each requirement (e.g. 'six==1.16.0'), then deploy again; it is not "
            "retried until then",
        )
    hint = (
        "check the spelling and version of each requirement (e.g. 'six==1.16.0') "
        "and that the package index is reachable"
    )
    return EnvironmentBuildError(message, hint)


# What uv and pip print when the index answered but cannot satisfy a requirement, as
# opposed to a network failure, which is worth retrying.
_UNRESOLVABLE_MARKERS = (
    "no solution found when resolving",
    "not found in the package registry",
    "no matching distribution found",
    "could not find a version that satisfies",
    "no versions of",
)


def _unresolvable(output: Sequence[str]) -> bool:
    text = "\n".join(output).lower()
    return any(marker in text for marker in _UNRESOLVABLE_MARKERS)


async def _lines(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    # Read in chunks rather than readline(): a line over the stream's limit would raise.
    pending = b""
    while chunk := await stream.read(65536):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            if text := raw.decode("utf-8", "replace").rstrip():
                yield text
    if text := pending.decode("utf-8", "replace").rstrip():
        yield text


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    """Exclusive flock on `path`, polled so that the event loop never blocks on it and a
    cancelled waiter holds nothing (a thread blocked in flock could not be called back)."""
    delay = 0.01
    while (fd := _try_lock(path)) is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)
    try:
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _try_lock(path: Path) -> int | None:
    """A descriptor holding the flock on `path`, or None when someone else holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        held = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            return fd
        os.close(fd)  # prune unlinked the file after we opened it: lock the one there now


def _swap(staging: Path, final: Path) -> None:
    """Put the finished environment in place with renames, so it appears whole or not at all."""
    try:
        os.rename(staging, final)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    # An outdated environment (another Python, or a build without a marker) is in the way.
    old = final.with_name(f"{final.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(final, old)
    os.rename(staging, final)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _retarget_scripts(bin_dir: Path, old: Path, new: Path) -> None:
    """Rewrite `old` to `new` in the text files of bin/ (script shebangs, activate scripts)."""
    old_bytes, new_bytes = str(old).encode(), str(new).encode()
    for script in bin_dir.iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        data = script.read_bytes()
        if old_bytes in data and b"\0" not in data:  # binaries are left alone
            script.write_bytes(data.replace(old_bytes, new_bytes))
