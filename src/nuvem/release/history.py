"""A repository's releases and the commits since: the one place that asks git, behind a
small interface with an in-memory fake for the tests of what reads it."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from nuvem.errors import BadRequest, NuvemError
from nuvem.release.semver import Version


class History(Protocol):
    def release_tags(self) -> list[str]:
        """Tags on the current commit's history (any form; non-versions are skipped)."""

    def messages_since(self, tag: str | None) -> list[str]:
        """Messages of the commits after `tag` (all commits for None), merges left out."""


@dataclass
class MemoryHistory:
    """Commits as (message, tags) pairs, oldest first, on one line of history."""

    commits: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def release_tags(self) -> list[str]:
        return [tag for _, tags in self.commits for tag in tags]

    def messages_since(self, tag: str | None) -> list[str]:
        start = 0
        for index, (_, tags) in enumerate(self.commits):
            if tag in tags:
                start = index + 1
        return [message for message, _ in self.commits[start:]]


class GitHistory:
    """The git repository at (or above) `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        git = shutil.which("git")
        if git is None:
            raise NuvemError("git is not installed", "install git: versions come from its history")
        self.git = git
        inside = self._run("rev-parse", "--is-inside-work-tree", check=False)
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            raise BadRequest(
                f"{folder.resolve()} is not in a git repository",
                "run it in your function repository, or `git init` and commit first",
            )

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.git, "-C", str(self.folder), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise NuvemError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def _has_commits(self) -> bool:
        return self._run("rev-parse", "--verify", "-q", "HEAD", check=False).returncode == 0

    def release_tags(self) -> list[str]:
        if not self._has_commits():
            return []
        return self._run("tag", "--merged", "HEAD").stdout.split()

    def messages_since(self, tag: str | None) -> list[str]:
        if not self._has_commits():
            return []
        span = f"{tag}..HEAD" if tag else "HEAD"
        # NUL between messages: a message may hold any other character.
        out = self._run("log", "--no-merges", "--format=%B%x00", span).stdout
        return [message.strip("\n") for message in out.split("\x00")[:-1]]


def latest_release(history: History) -> Version | None:
    """The highest `vX.Y.Z` tag on the history; None when there is none."""
    versions = [v for v in map(Version.from_tag, history.release_tags()) if v is not None]
    return max(versions, default=None)
