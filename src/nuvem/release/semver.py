"""A release version, `MAJOR.MINOR.PATCH`, as tags `vX.Y.Z` name it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from nuvem.errors import BadRequest

TAG = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


class Bump(IntEnum):
    """How far a change moves the version; a release takes the largest of its commits'."""

    NONE = 0  # docs, tests, chores: no release
    PATCH = 1  # fix, perf
    MINOR = 2  # feat
    MAJOR = 3  # `!` after the type, or a BREAKING CHANGE footer


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def from_tag(cls, tag: str) -> Version | None:
        """The version a `vX.Y.Z` tag names; None for any other tag."""
        match = TAG.match(tag)
        if match is None:
            return None
        return cls(*(int(part) for part in match.groups()))

    @classmethod
    def parse(cls, text: str) -> Version:
        found = cls.from_tag(text if text.startswith("v") else f"v{text}")
        if found is None:
            raise BadRequest(f"{text!r} is not a version", "write MAJOR.MINOR.PATCH, e.g. 1.4.0")
        return found

    def bumped(self, bump: Bump) -> Version:
        """The next version. Below 1.0.0 a breaking change still makes 1.0.0, as
        python-semantic-release does with `major_on_zero = true`."""
        if bump is Bump.MAJOR:
            return Version(self.major + 1, 0, 0)
        if bump is Bump.MINOR:
            return Version(self.major, self.minor + 1, 0)
        if bump is Bump.PATCH:
            return Version(self.major, self.minor, self.patch + 1)
        return self

    @property
    def tag(self) -> str:
        return f"v{self}"

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


ZERO = Version(0, 0, 0)
