"""What one commit message asks of the version (Conventional Commits), by the rules the
project's own release uses: python-semantic-release's conventional parser as configured in
pyproject.toml, whose reading of a message (paragraphs, footers, word wrap) this follows
step by step. tests/release checks that both read every message alike."""

from __future__ import annotations

import re
from collections.abc import Iterable

from nuvem.release.semver import ZERO, Bump, Version

TYPES = (
    "feat",
    "fix",
    "perf",
    "build",
    "bench",
    "chore",
    "ci",
    "docs",
    "refactor",
    "revert",
    "style",
    "test",
)
LEVELS = {"feat": Bump.MINOR, "fix": Bump.PATCH, "perf": Bump.PATCH}
MESSAGE = re.compile(
    r"^(?P<type>" + "|".join(TYPES) + r")(?:\((?P<scope>[^\n]+)\))?(?P<breaking>!)?:\s+"
    r"(?P<subject>[^\n]+)(?:\n\n(?P<body>.+))?",
    re.DOTALL,
)
# A paragraph that starts so, with a description after it, breaks compatibility.
BREAKING = re.compile(r"BREAKING[ -]CHANGE:\s?(.*)")
LINE_END = re.compile(r"[\r\t\f\v ]*\r?\n")
HYPHEN_WRAP = re.compile(r"((?<=\w)-\n(?=\w))")
WORD_WRAP = re.compile(r"((?<!-)\n(?![\s*-]))")
# A git trailer line followed by another `Key:` line: a blank line goes between them, so
# that each footer is a paragraph of its own.
FOOTERS = re.compile(r"^ {0,2}([\w-]*: .+)$\n?((?!\n) *[^:\n]+:)", re.MULTILINE)


def paragraphs(text: str) -> list[str]:
    """A body's paragraphs, each wrapped line joined to the one before."""
    text = HYPHEN_WRAP.sub("-", LINE_END.sub("\n", text))
    spread = ""
    while spread != text:
        spread, text = text, FOOTERS.sub(r"\1\n\n\2", text)
    return [
        p for p in (WORD_WRAP.sub(" ", part).strip() for part in text.strip().split("\n\n")) if p
    ]


def _breaks(part: str) -> bool:
    match = BREAKING.match(part)
    return bool(match and match.group(1))


def bump_of(message: str) -> Bump:
    """The bump a message asks for; a message that is not a Conventional Commit asks none."""
    match = MESSAGE.match(message)
    if match is None:
        return Bump.NONE
    parts = [match.group("subject"), *paragraphs(match.group("body") or "")]
    if match.group("breaking") or any(_breaks(part) for part in parts):
        return Bump.MAJOR
    return LEVELS.get(match.group("type"), Bump.NONE)


def next_version(current: Version | None, messages: Iterable[str]) -> Version:
    """The version after `current` (None: nothing released yet, counted from 0.0.0) that the
    commits since it make: the largest bump any of them asks for."""
    bump = max((bump_of(message) for message in messages), default=Bump.NONE)
    return (current or ZERO).bumped(bump)
