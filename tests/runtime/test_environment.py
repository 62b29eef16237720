"""Per-function environments.

Fast tests drive the builder with a fake `uv`: its `venv` runs the real uv (no network),
its `pip install` runs a few lines of Python the test chooses. Tests marked slow install
real packages from PyPI.
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

import nuvem
from nuvem.cli.environment_progress import rich_progress
from nuvem.errors import EnvironmentBuildError, RequirementsUnresolvable
from nuvem.runtime.environment import (
    DEFAULT_UV,
    MARKER,
    Environment,
    EnvironmentBuilder,
    Phase,
    ProgressEvent,
)
from nuvem.stack.function import FunctionSpec
from support import wait_until

pytestmark = pytest.mark.anyio

needs_uv = pytest.mark.skipif(DEFAULT_UV is None, reason="uv is not installed")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def spec(name: str, *requirements: str) -> FunctionSpec:
    return FunctionSpec(name=name, handler="handler:handle", requirements=requirements)


class Events:
    def __init__(self) -> None:
        self.events: list[ProgressEvent] = []

    def __call__(self, event: ProgressEvent) -> None:
        self.events.append(event)

    def phases(self, function: str | None = None) -> list[Phase]:
        return [e.phase for e in self.events if function in (None, e.function)]


FakeUv = Callable[..., Path]


@pytest.fixture
def fake_uv(tmp_path: Path) -> FakeUv:
    """Make a fake uv whose `pip install` runs `pip_body`; each call is logged to calls.log."""

    def make(pip_body: str = "") -> Path:
        assert DEFAULT_UV is not None
        folder = tmp_path / "fake-uv"
        folder.mkdir(exist_ok=True)
        script = folder / "uv"
        script.write_text(
            f"#!{sys.executable}\n"
            + textwrap.dedent(
                f"""\
                import os, pathlib, sys, time
                args = sys.argv[1:]
                with open({str(folder / "calls.log")!r}, "a") as log:
                    log.write(args[0] + "\\n")
                if args[0] == "venv":
                    os.execv({DEFAULT_UV!r}, [{DEFAULT_UV!r}, *args])
                env = pathlib.Path(args[args.index("--python") + 1]).parent.parent
                site = env / "lib" / f"python{{sys.version_info[0]}}.{{sys.version_info[1]}}"
                site = site / "site-packages"
                """
            )
            + textwrap.dedent(pip_body)
        )
        script.chmod(0o755)
        return script

    return make


def calls(fake: Path) -> list[str]:
    log = fake.parent / "calls.log"
    return log.read_text().split() if log.exists() else []


def package_folder() -> Path:
    return Path(nuvem.__file__).resolve().parent


def run_python(env: Environment, code: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return subprocess.run(
        [str(env.python), "-c", code], capture_output=True, text=True, env=environ, check=False
    )


def assert_isolated(env: Environment) -> None:
    worker = run_python(env, "import nuvem.runtime.worker, nuvem.handler")
    assert worker.returncode == 0, worker.stderr
    platform = run_python(env, "import fastapi")
    assert platform.returncode != 0
    assert "ModuleNotFoundError" in platform.stderr


async def test_function_without_requirements_runs_on_the_platform_interpreter(
    tmp_path: Path,
) -> None:
    env = await EnvironmentBuilder(tmp_path).ensure(spec("plain"))
    assert env == Environment(key=None, python=Path(sys.executable), path=None)
    assert not (tmp_path / "envs").exists()


@needs_uv
async def test_build_links_the_sdk_and_hides_platform_packages(
    tmp_path: Path, fake_uv: FakeUv
) -> None:
    events = Events()
    builder = EnvironmentBuilder(tmp_path, uv=str(fake_uv()), on_progress=events)
    function = spec("hello", "six==1.16.0")

    env = await builder.ensure(function)

    assert env.key == function.environment_key()
    assert env.path == tmp_path / "envs" / str(env.key)
    assert env.python == env.path / "bin" / "python"
    assert (tmp_path / "sdk" / "nuvem").readlink() == package_folder()
    marker = json.loads((env.path / MARKER).read_text())
    assert marker["requirements"] == ["six==1.16.0"]
    assert marker["python"] == sys.version
    assert events.phases() == [Phase.CREATING, Phase.INSTALLING, Phase.READY]
    assert not (tmp_path / "envs" / f"{env.key}.tmp").exists()
    assert_isolated(env)


@needs_uv
async def test_second_ensure_is_a_cache_hit(tmp_path: Path, fake_uv: FakeUv) -> None:
    fake = fake_uv()
    await EnvironmentBuilder(tmp_path, uv=str(fake)).ensure(spec("a", "six==1.16.0"))
    events = Events()
    # A new builder, as after a restart: the cache lives on disk.
    builder = EnvironmentBuilder(tmp_path, uv=str(fake), on_progress=events)

    started = time.monotonic()
    env = await builder.ensure(spec("b", " six==1.16.0 "))

    assert time.monotonic() - started < 0.5
    assert events.phases() == [Phase.CACHED]
    assert calls(fake) == ["venv", "pip"]
    assert env.key == spec("a", "six==1.16.0").environment_key()


@needs_uv
async def test_concurrent_ensure_builds_once(tmp_path: Path, fake_uv: FakeUv) -> None:
    fake = fake_uv("time.sleep(0.3)\n")
    events = Events()
    # Two builders share the root like two processes do: only the file lock orders them.
    first = EnvironmentBuilder(tmp_path, uv=str(fake), on_progress=events)
    second = EnvironmentBuilder(tmp_path, uv=str(fake), on_progress=events)
    functions = [spec(f"f{i}", "six==1.16.0") for i in range(4)]

    builders = [first, first, second, second]
    envs = await asyncio.gather(*(b.ensure(f) for b, f in zip(builders, functions, strict=True)))

    assert len({env.path for env in envs}) == 1
    assert calls(fake) == ["venv", "pip"]
    assert events.phases().count(Phase.READY) == 1
    assert events.phases().count(Phase.CACHED) == 3


@needs_uv
async def test_concurrent_processes_build_once(tmp_path: Path, fake_uv: FakeUv) -> None:
    fake = fake_uv("time.sleep(0.5)\n")
    code = textwrap.dedent(
        f"""\
        import asyncio, pathlib
        from nuvem.runtime.environment import EnvironmentBuilder
        from nuvem.stack.function import FunctionSpec
        spec = FunctionSpec(name="f", handler="h:h", requirements=["six==1.16.0"])
        builder = EnvironmentBuilder(pathlib.Path({str(tmp_path)!r}), uv={str(fake)!r})
        print(asyncio.run(builder.ensure(spec)).python)
        """
    )
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    outputs = [await process.communicate() for process in processes]

    assert [process.returncode for process in processes] == [0, 0, 0]
    assert len({stdout for stdout, _ in outputs}) == 1
    assert calls(fake) == ["venv", "pip"]


@needs_uv
async def test_half_built_environment_is_rebuilt(tmp_path: Path, fake_uv: FakeUv) -> None:
    function = spec("f", "six==1.16.0")
    key = str(function.environment_key())
    # What a crash leaves: a staging folder, and a folder without its marker.
    (tmp_path / "envs" / f"{key}.tmp" / "bin").mkdir(parents=True)
    (tmp_path / "envs" / key / "bin").mkdir(parents=True)
    (tmp_path / "envs" / key / "junk").write_text("half")
    events = Events()

    env = await EnvironmentBuilder(tmp_path, uv=str(fake_uv()), on_progress=events).ensure(function)

    assert events.phases()[-1] == Phase.READY
    assert env.path is not None
    assert not (env.path / "junk").exists()
    assert sorted(p.name for p in (tmp_path / "envs").iterdir()) == [key, f"{key}.lock"]


@needs_uv
async def test_python_upgrade_rebuilds(tmp_path: Path, fake_uv: FakeUv) -> None:
    fake = fake_uv()
    builder = EnvironmentBuilder(tmp_path, uv=str(fake))
    env = await builder.ensure(spec("f", "six==1.16.0"))
    assert env.path is not None
    marker = env.path / MARKER
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "python": "3.10.0"}))

    await builder.ensure(spec("f", "six==1.16.0"))

    assert calls(fake) == ["venv", "pip", "venv", "pip"]
    assert json.loads(marker.read_text())["python"] == sys.version


@needs_uv
async def test_package_shadowing_the_sdk_fails_the_build(tmp_path: Path, fake_uv: FakeUv) -> None:
    fake = fake_uv(
        """\
        (site / "nuvem" / "runtime").mkdir(parents=True)
        (site / "nuvem" / "__init__.py").write_text("")
        (site / "nuvem" / "runtime" / "__init__.py").write_text("")
        (site / "nuvem" / "runtime" / "worker.py").write_text("")
        """
    )
    builder = EnvironmentBuilder(tmp_path, uv=str(fake))

    with pytest.raises(EnvironmentBuildError, match="package named nuvem"):
        await builder.ensure(spec("f", "nuvem==0.0.1"))
    assert [p.suffix for p in (tmp_path / "envs").iterdir()] == [".lock"]


@needs_uv
async def test_build_error_shows_the_last_lines_of_output(tmp_path: Path, fake_uv: FakeUv) -> None:
    fake = fake_uv(
        """\
        for i in range(1, 31):
            print(f"output line {i}")
        sys.exit(3)
        """
    )
    events = Events()
    builder = EnvironmentBuilder(tmp_path, uv=str(fake), on_progress=events)

    with pytest.raises(EnvironmentBuildError) as caught:
        await builder.ensure(spec("broken", "six==1.16.0", "idna==3.6"))

    message = str(caught.value)
    assert "'broken'" in message
    assert "idna==3.6, six==1.16.0" in message
    assert "exited with code 3" in message
    assert "output line 30" in message
    assert "output line 11\n" in message
    assert "output line 10\n" not in message
    assert "check the spelling and version" in message
    assert events.phases()[-1] == Phase.FAILED
    assert [p.suffix for p in (tmp_path / "envs").iterdir()] == [".lock"]


async def test_missing_installer_raises_build_error(tmp_path: Path) -> None:
    builder = EnvironmentBuilder(tmp_path, uv=str(tmp_path / "no-such-uv"))

    with pytest.raises(EnvironmentBuildError, match=r"cannot run .*no-such-uv") as caught:
        await builder.ensure(spec("f", "six==1.16.0"))
    assert caught.value.exit_code == 10


@needs_uv
async def test_cancelled_build_kills_the_installer_and_leaves_nothing(
    tmp_path: Path, fake_uv: FakeUv
) -> None:
    pid_file = tmp_path / "installer.pid"
    fake = fake_uv(
        f"""\
        pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))
        time.sleep(60)
        """
    )
    builder = EnvironmentBuilder(tmp_path, uv=str(fake))
    function = spec("f", "six==1.16.0")
    task = asyncio.create_task(builder.ensure(function))
    await wait_until(
        lambda: pid_file.exists() and pid_file.read_text(), 30, "the installer to start"
    )

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
    assert [p.suffix for p in (tmp_path / "envs").iterdir()] == [".lock"]


async def test_prune_removes_environments_no_function_uses(tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    for name in ["aaaa", "bbbb", "cccc", "aaaa.tmp", "bbbb.old-1234", "dddd.tmp"]:
        (envs / name / "bin").mkdir(parents=True)
    for name in ["aaaa.lock", "bbbb.lock", "cccc.lock", "eeee.lock"]:
        (envs / name).touch()

    removed = await EnvironmentBuilder(tmp_path).prune({"aaaa"})

    assert removed == ["bbbb", "cccc"]
    assert sorted(p.name for p in envs.iterdir()) == ["aaaa", "aaaa.lock"]


async def test_prune_skips_an_environment_being_built(tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    (envs / "aaaa.tmp").mkdir(parents=True)
    (envs / "bbbb").mkdir()
    with (envs / "aaaa.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        removed = await EnvironmentBuilder(tmp_path).prune(set())

    assert removed == ["bbbb"]
    assert sorted(p.name for p in envs.iterdir()) == ["aaaa.lock", "aaaa.tmp"]


async def test_prune_without_environments(tmp_path: Path) -> None:
    assert await EnvironmentBuilder(tmp_path).prune(set()) == []


def test_rich_progress_prints_a_line_per_phase() -> None:
    buffer = io.StringIO()
    show = rich_progress(Console(file=buffer, width=200, color_system=None))
    for phase, message in [
        (Phase.CREATING, "creating a virtual environment"),
        (Phase.INSTALLING, "installing six[extra]==1.16.0"),
        (Phase.INSTALLING, "Resolved 1 package"),
        (Phase.READY, "environment built"),
        (Phase.CACHED, "environment already built"),
        (Phase.FAILED, "installing the requirements failed"),
    ]:
        show(ProgressEvent("hello", "abcd", phase, message, 1.25))

    lines = buffer.getvalue().splitlines()
    assert lines == [
        "• hello (abcd): creating a virtual environment",
        "• hello (abcd): installing six[extra]==1.16.0",
        "✓ hello (abcd): environment built in 1.2s",
        "✓ hello (abcd): environment already built in 1.2s",
        "✗ hello (abcd): installing the requirements failed in 1.2s",
    ]


@pytest.mark.slow
@needs_uv
async def test_conflicting_versions_run_side_by_side(tmp_path: Path) -> None:
    events = Events()
    builder = EnvironmentBuilder(tmp_path, on_progress=events)
    new, old = spec("new-six", "six==1.16.0"), spec("old-six", "six==1.15.0")

    new_env, old_env = await asyncio.gather(builder.ensure(new), builder.ensure(old))

    assert new_env.path != old_env.path
    for env, version in [(new_env, "1.16.0"), (old_env, "1.15.0")]:
        found = run_python(env, "import six; print(six.__version__)")
        assert found.stdout.strip() == version, found.stderr
        assert_isolated(env)
    assert events.phases("new-six")[-1] == Phase.READY
    assert Phase.INSTALLING in events.phases("old-six")

    started = time.monotonic()
    again = await EnvironmentBuilder(tmp_path, on_progress=events).ensure(new)
    assert time.monotonic() - started < 0.5
    assert again == new_env
    assert events.phases("new-six")[-1] == Phase.CACHED


@pytest.mark.slow
@needs_uv
async def test_bad_requirement_raises_a_useful_error(tmp_path: Path) -> None:
    builder = EnvironmentBuilder(tmp_path)

    with pytest.raises(EnvironmentBuildError) as caught:
        await builder.ensure(spec("typo", "this-package-does-not-exist-nuvem==1.0"))

    message = str(caught.value)
    assert "'typo'" in message
    assert "this-package-does-not-exist-nuvem==1.0" in message
    assert "not found" in message  # the installer's own explanation
    assert "check the spelling and version" in message
    assert [p.suffix for p in (tmp_path / "envs").iterdir()] == [".lock"]
    # The index answered that it has no such package: final, and the next replica's start
    # hears it at once instead of rebuilding.
    assert isinstance(caught.value, RequirementsUnresolvable)
    started = time.monotonic()
    with pytest.raises(RequirementsUnresolvable):
        await builder.ensure(spec("typo", "this-package-does-not-exist-nuvem==1.0"))
    assert time.monotonic() - started < 0.5


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_pip_fallback_without_uv(tmp_path: Path) -> None:
    events = Events()
    builder = EnvironmentBuilder(tmp_path, uv=None, on_progress=events)

    env = await builder.ensure(spec("pip-built", "six==1.15.0"))

    found = run_python(env, "import six; print(six.__version__)")
    assert found.stdout.strip() == "1.15.0", found.stderr
    assert_isolated(env)
    assert env.path is not None
    # Scripts written during the build point at the final folder, not the staging one.
    assert (env.path / "bin" / "pip").read_text().startswith(f"#!{env.path}/bin/")
    assert events.phases()[-1] == Phase.READY
