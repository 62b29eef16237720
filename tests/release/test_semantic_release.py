"""python-semantic-release, configured by pyproject.toml, in a git repository the test builds
with a known history: the next version and the changelog are what the rules say, and
`nuvem version` computes the same. Offline: the remote is named but never reached."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from support import Nuvem

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
SEMANTIC_RELEASE = Path(sys.executable).with_name("semantic-release")


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout


def commit(repo: Path, *messages: str) -> None:
    for message in messages:
        git(repo, "commit", "-q", "--allow-empty", "-m", message)


def release_config() -> str:
    """The project's own [tool.semantic_release] tables, minus nuvem's version variable."""
    text = PYPROJECT.read_text()
    tables = text[text.index("[tool.semantic_release]") : text.index("[tool.ruff]")]
    return "\n".join(line for line in tables.splitlines() if "version_variables" not in line)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "fn"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "remote", "add", "origin", "https://github.com/example/fn.git")
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "fn"\nversion = "1.2.3"\n\n{release_config()}'
    )
    git(root, "add", "pyproject.toml")
    commit(root, "chore: start")
    git(root, "tag", "v1.2.3")
    return root


def semantic_release(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN", "CI")}
    done = subprocess.run(
        [str(SEMANTIC_RELEASE), *args], cwd=repo, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def section(changelog: str, heading: str) -> str:
    """The text under `heading`, up to the next heading."""
    start = changelog.index(heading) + len(heading)
    ends = [i for i in (changelog.find("\n#", start),) if i >= 0]
    return changelog[start : min(ends, default=len(changelog))]


def nuvem_next(repo: Path) -> str:
    return Nuvem(repo).run("version", "--next").stdout.strip()


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (["docs: words", "test: more"], "1.2.3"),
        (["fix: a bug", "docs: words"], "1.2.4"),
        (["perf: faster"], "1.2.4"),
        (["fix: a", "feat(api): b", "perf: c"], "1.3.0"),
        (["feat: a", "feat(cli)!: renamed a flag"], "2.0.0"),
        (["fix: a\n\nBREAKING CHANGE: the old flag is gone"], "2.0.0"),
        (["Update README", "wip"], "1.2.3"),
    ],
)
def test_next_version_from_the_commits_since_the_tag(
    repo: Path, messages: list[str], expected: str
) -> None:
    commit(repo, *messages)
    assert semantic_release(repo, "--noop", "version", "--print").endswith(expected)
    assert nuvem_next(repo) == expected


def test_with_no_tag_versions_count_from_zero(tmp_path: Path, repo: Path) -> None:
    git(repo, "tag", "-d", "v1.2.3")
    commit(repo, "fix: a")
    assert semantic_release(repo, "version", "--print") == nuvem_next(repo) == "0.0.1"
    commit(repo, "feat: b")
    assert semantic_release(repo, "version", "--print") == nuvem_next(repo) == "0.1.0"
    commit(repo, "feat!: c")  # major_on_zero: a breaking change ends 0.x
    assert semantic_release(repo, "version", "--print") == nuvem_next(repo) == "1.0.0"


def test_a_release_writes_the_changelog_the_version_and_the_tag(repo: Path) -> None:
    commit(
        repo,
        "feat(api): stream answers",
        "fix: refuse an empty body",
        "perf: reuse connections",
        "docs: explain streaming",
    )
    semantic_release(repo, "version", "--no-push", "--no-vcs-release", "--skip-build")
    assert git(repo, "tag", "--points-at", "HEAD").split() == ["v1.3.0"]
    assert git(repo, "log", "-1", "--format=%s").strip() == "chore(release): v1.3.0"
    assert tomllib.loads((repo / "pyproject.toml").read_text())["project"]["version"] == "1.3.0"
    changelog = (repo / "CHANGELOG.md").read_text().lower()  # subjects are capitalised
    assert "## v1.3.0" in changelog
    assert "**api**: stream answers" in section(changelog, "### features")
    assert "refuse an empty body" in section(changelog, "### bug fixes")
    assert "reuse connections" in section(changelog, "### performance improvements")
    assert "explain streaming" in changelog  # documentation has a section too
    assert "chore(release)" not in changelog
    # The next release updates the same file above the last one; nuvem agrees on it.
    commit(repo, "fix: one more")
    assert nuvem_next(repo) == "1.3.1"
    semantic_release(repo, "version", "--no-push", "--no-vcs-release", "--skip-build")
    changelog = (repo / "CHANGELOG.md").read_text()
    assert changelog.index("## v1.3.1") < changelog.index("## v1.3.0")
    shown = Nuvem(repo).run("version").stdout
    assert shown.startswith("current: 1.3.1\nnext: 1.3.1 (no release")


def test_nuvem_version_outside_a_repository_says_how_to_fix_it(tmp_path: Path) -> None:
    result = Nuvem(tmp_path).run("version", check=False)
    assert result.returncode == 2
    assert "is not in a git repository" in result.stderr
    assert "git init" in result.stderr
    own = Nuvem(tmp_path).run("--version").stdout
    assert own.startswith("nuvem ")
