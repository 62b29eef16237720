"""The composite actions' shell steps, run here as a runner runs them (inputs as environment
variables, GITHUB_OUTPUT/GITHUB_ENV/GITHUB_PATH files) against a real gateway: nuvem-setup
installs the CLI from this checkout, nuvem-auth turns the admin password into an API key
header, nuvem-deploy packages, uploads and waits, and rolls back a deploy that fails."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from support import Nuvem, block_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
ACTIONS = ROOT / ".github" / "actions"
LIB = str(ACTIONS / "lib" / "github.sh")
STACK = """\
functions:
  greet:
    handler: functions:greet
    root: app
"""
BROKEN_STACK = (
    STACK
    + """\
  extra:
    handler: functions:greet
    root: app
"""
)


@dataclass
class Step:
    """One run of an action's script: its exit status, output, and the runner files."""

    returncode: int
    log: str
    outputs: dict[str, str]
    env: dict[str, str]


def read_commands(path: Path) -> dict[str, str]:
    """`NAME<<DELIMITER` / value lines / `DELIMITER` records, as the runner reads them."""
    found: dict[str, str] = {}
    # The runner splits on "\n" alone (str.splitlines would also split on \x1e, \u2028, ...).
    lines = path.read_text().split("\n")[:-1] if path.exists() else []
    while lines:
        name, _, end = lines.pop(0).partition("<<")
        value = []
        while (line := lines.pop(0)) != end:
            value.append(line)
        found[name] = "\n".join(value)
    return found


def run_step(script: str, inputs: Mapping[str, str], env: Mapping[str, str], cwd: Path) -> Step:
    files = {name: cwd / f"{name.lower()}-{os.urandom(4).hex()}" for name in ("OUT", "ENV")}
    done = subprocess.run(
        [str(ACTIONS / script)],
        cwd=cwd,
        env={
            **env,
            **inputs,
            "GITHUB_OUTPUT": str(files["OUT"]),
            "GITHUB_ENV": str(files["ENV"]),
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return Step(
        done.returncode,
        done.stdout + done.stderr,
        read_commands(files["OUT"]),
        read_commands(files["ENV"]),
    )


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A runner's environment after nuvem-setup: the CLI installed from this checkout (as
    nuvem's own CI does with `package: .`), its folder on PATH by way of GITHUB_PATH."""
    folder = tmp_path_factory.mktemp("runner")
    path_file = folder / "github-path"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NUVEM_", "GITHUB_"))}
    base.update(RUNNER_TEMP=str(folder), GITHUB_PATH=str(path_file), COLUMNS="1000")
    step = run_step("nuvem-setup/setup.sh", {"NUVEM_PACKAGE": str(ROOT)}, base, folder)
    assert step.returncode == 0, step.log
    from nuvem import __version__

    assert step.outputs["version"] == __version__
    added = path_file.read_text().split()
    assert added == [step.outputs["path"]] == [str(folder / "nuvem-cli" / "bin")]
    return {**base, "PATH": os.pathsep.join([*added, "/usr/bin", "/bin"])}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Nuvem]:
    platform = Nuvem(tmp_path / "gateway-host")
    platform.root.mkdir()
    platform.up()
    try:
        yield platform
    finally:
        platform.stop()


def write_project(folder: Path, body: str, stack: str = STACK) -> None:
    (folder / "app").mkdir(parents=True, exist_ok=True)
    (folder / "nuvem.yaml").write_text(stack)
    (folder / "app" / "functions.py").write_text(body)


def greeting(gateway: Nuvem, header: str) -> str:
    name, _, value = header.partition(": ")
    try:
        answer = httpx.post(f"{gateway.url}/function/greet", headers={name: value}, timeout=10)
    except httpx.HTTPError:
        return ""
    return answer.text if answer.status_code == 200 else f"{answer.status_code}"


def test_setup_refuses_an_empty_default_repository(tmp_path: Path) -> None:
    step = run_step(
        "nuvem-setup/setup.sh",
        {"NUVEM_PACKAGE": "git+https://github.com/@"},
        {"PATH": os.environ["PATH"]},
        tmp_path,
    )
    assert step.returncode == 2
    assert "::error title=nuvem-setup::no repository to install nuvem from" in step.log


def test_auth_then_deploy_then_a_failed_deploy_rolls_back(
    runner: dict[str, str], gateway: Nuvem, tmp_path: Path
) -> None:
    project = tmp_path / "shop"  # shares nothing with the gateway's folder
    write_project(project, "def greet(req):\n    return 'one'\n")

    wrong = run_step(
        "nuvem-auth/auth.sh",
        {"NUVEM_URL": gateway.url, "NUVEM_ADMIN_PASSWORD": "not-the-password"},
        runner,
        project,
    )
    assert wrong.returncode == 3, wrong.log
    assert "the admin credentials are wrong" in wrong.log
    assert f"::error title=nuvem-auth::no API key from {gateway.url}" in wrong.log
    assert wrong.env == {}

    auth = run_step(
        "nuvem-auth/auth.sh",
        {
            "NUVEM_URL": gateway.url,
            "NUVEM_ADMIN_PASSWORD": gateway.admin_password(),
            "NUVEM_KEY_FUNCTIONS": "greet",
            "GITHUB_REPOSITORY": "example/shop",
            "GITHUB_RUN_ID": "42",
        },
        runner,
        project,
    )
    assert auth.returncode == 0, auth.log
    key = auth.outputs["api-key"]
    assert f"::add-mask::{key}" in auth.log
    assert auth.outputs["header"] == f"Authorization: Bearer {key}"
    assert key.startswith(f"nv_{auth.outputs['key-id']}_")
    assert auth.env == {
        "NUVEM_URL": gateway.url,
        "NUVEM_ADMIN_PASSWORD": gateway.admin_password(),
        "NUVEM_API_KEY": key,
    }
    with gateway.admin() as admin:
        keys = {k["id"]: k for k in admin.get("/system/keys").json()}
    assert keys[auth.outputs["key-id"]]["name"] == "ci-example/shop-42"
    assert keys[auth.outputs["key-id"]]["functions"] == ["greet"]

    # The next steps see what nuvem-auth put in GITHUB_ENV, as on a runner.
    job = {**runner, **auth.env}
    first = run_step("nuvem-deploy/deploy.sh", {"NUVEM_VERSION": "1.0.0"}, job, project)
    assert first.returncode == 0, first.log
    assert first.outputs["version"] == "1.0.0"
    assert re.fullmatch(r"[0-9a-f]{64}", first.outputs["digest"])
    assert Path(first.outputs["bundle"]) == project / "dist" / "shop-1.0.0.zip"
    assert "greet: created" in first.log
    assert greeting(gateway, auth.outputs["header"]) == "one"  # ready when the step ended
    assert gateway.function("greet")["version"] == "1.0.0"

    # 2.0.0 cannot start, and brings a new function: the step fails, greet goes back to
    # 1.0.0 and the new one is removed.
    write_project(project, "raise RuntimeError('the weights are missing')\n", BROKEN_STACK)
    failed = run_step(
        "nuvem-deploy/deploy.sh",
        {"NUVEM_VERSION": "2.0.0", "NUVEM_TIMEOUT": "120"},
        job,
        project,
    )
    assert failed.returncode != 0, failed.log
    assert "::error title=nuvem-deploy::deploying 2.0.0" in failed.log
    assert "rolled greet back to 1.0.0" in failed.log
    assert "removed extra" in failed.log
    assert gateway.function("greet")["version"] == "1.0.0"
    block_until(lambda: greeting(gateway, auth.outputs["header"]) == "one", 60, "greet back at one")
    with gateway.admin() as admin:
        assert admin.get("/system/function/extra").status_code == 404

    revoked = run_step(
        "nuvem-auth/auth.sh",
        {
            "NUVEM_URL": gateway.url,
            "NUVEM_ADMIN_PASSWORD": gateway.admin_password(),
            "NUVEM_REVOKE_KEY": auth.outputs["key-id"],
        },
        runner,
        project,
    )
    assert revoked.returncode == 0, revoked.log
    block_until(
        lambda: greeting(gateway, auth.outputs["header"]) == "401", 30, "the revoked key refused"
    )


def test_deploy_without_rollback_leaves_the_failed_version(
    runner: dict[str, str], gateway: Nuvem, tmp_path: Path
) -> None:
    project = tmp_path / "shop"
    write_project(project, "def greet(req):\n    return 'one'\n")
    job = {**runner, "NUVEM_URL": gateway.url, "NUVEM_ADMIN_PASSWORD": gateway.admin_password()}
    assert (
        run_step("nuvem-deploy/deploy.sh", {"NUVEM_VERSION": "1.0.0"}, job, project).returncode == 0
    )
    write_project(project, "raise RuntimeError('the weights are missing')\n")
    failed = run_step(
        "nuvem-deploy/deploy.sh",
        {"NUVEM_VERSION": "2.0.0", "NUVEM_ROLLBACK": "false", "NUVEM_TIMEOUT": "120"},
        job,
        project,
    )
    assert failed.returncode != 0, failed.log
    assert "rolled" not in failed.log
    assert gateway.function("greet")["version"] == "2.0.0"
    bad = run_step("nuvem-deploy/deploy.sh", {"NUVEM_ROLLBACK": "yes"}, job, project)
    assert bad.returncode == 2
    assert "the input 'rollback-on-failure' is yes: give true or false" in bad.log
    nowhere = run_step("nuvem-deploy/deploy.sh", {"NUVEM_STACK_FILE": "other.yaml"}, job, project)
    assert nowhere.returncode == 2
    assert "no stack file other.yaml: set the input 'stack-file'" in nowhere.log
    unset = run_step("nuvem-deploy/deploy.sh", {}, runner, project)
    assert unset.returncode == 2
    assert "the input 'gateway-url' is empty" in unset.log


@settings(max_examples=40, deadline=None)
@example(value="ok\nsecond<<EOF\nevil\nEOF\n")
@given(
    value=st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\r")),
)
def test_a_value_cannot_add_lines_of_its_own_to_the_runners_files(value: str) -> None:
    """What the scripts write to GITHUB_OUTPUT/GITHUB_ENV reads back as written, whatever it
    holds (newlines, `NAME<<X` lines): an input cannot set another output or variable."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        subprocess.run(
            [
                "bash",
                "-c",
                '. "$0" test; set_output first "$1"; set_output second done',
                LIB,
                value,
            ],
            env={"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(out)},
            check=True,
            timeout=30,
        )
        assert read_commands(out) == {"first": value, "second": "done"}
