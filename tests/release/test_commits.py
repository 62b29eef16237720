"""nuvem's reading of a commit message against python-semantic-release's own parser, built
from the options in pyproject.toml: both must ask the same bump of every message."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from semantic_release.commit_parser.conventional.options import ConventionalCommitParserOptions
from semantic_release.commit_parser.conventional.parser import ConventionalCommitParser
from semantic_release.enums import LevelBump

from nuvem.release.commits import LEVELS, TYPES, bump_of, next_version
from nuvem.release.history import MemoryHistory, latest_release
from nuvem.release.semver import Bump, Version

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
CONFIG = tomllib.loads(PYPROJECT.read_text())["tool"]["semantic_release"]
OPTIONS = CONFIG["commit_parser_options"]
PSR = ConventionalCommitParser(
    ConventionalCommitParserOptions(
        minor_tags=tuple(OPTIONS["minor_tags"]),
        patch_tags=tuple(OPTIONS["patch_tags"]),
        allowed_tags=tuple(OPTIONS["allowed_tags"]),
        parse_squash_commits=OPTIONS["parse_squash_commits"],
        ignore_merge_commits=OPTIONS["ignore_merge_commits"],
    )
)
TO_PSR = {
    Bump.NONE: LevelBump.NO_RELEASE,
    Bump.PATCH: LevelBump.PATCH,
    Bump.MINOR: LevelBump.MINOR,
    Bump.MAJOR: LevelBump.MAJOR,
}


def psr_bump(message: str) -> LevelBump:
    parsed = PSR.parse_message(message)
    return LevelBump.NO_RELEASE if parsed is None else parsed.bump


def test_the_rules_are_the_ones_pyproject_gives_semantic_release() -> None:
    assert set(TYPES) == set(OPTIONS["allowed_tags"])
    assert {t for t, b in LEVELS.items() if b is Bump.MINOR} == set(OPTIONS["minor_tags"])
    assert {t for t, b in LEVELS.items() if b is Bump.PATCH} == set(OPTIONS["patch_tags"])
    assert CONFIG["tag_format"] == "v{version}"
    assert CONFIG["major_on_zero"] is True
    assert CONFIG["allow_zero_version"] is True


@pytest.mark.parametrize(
    ("message", "bump"),
    [
        ("feat: a thing", Bump.MINOR),
        ("feat(api): a thing", Bump.MINOR),
        ("fix: a bug", Bump.PATCH),
        ("perf(router): faster", Bump.PATCH),
        ("docs: words", Bump.NONE),
        ("chore(release): v1.2.0", Bump.NONE),
        ("feat!: gone", Bump.MAJOR),
        ("refactor(cli)!: renamed", Bump.MAJOR),
        ("fix: x\n\nBREAKING CHANGE: the flag is gone", Bump.MAJOR),
        ("fix: x\n\nSome words.\n\nBREAKING-CHANGE: gone\nRefs: #4", Bump.MAJOR),
        ("fix: x\n\nBREAKING CHANGE:", Bump.PATCH),  # no description
        ("fix: x\n\nnot at the start BREAKING CHANGE: y", Bump.PATCH),
        ("Update README", Bump.NONE),
        ("feature: not a type", Bump.NONE),
        ("Feat: capital", Bump.NONE),
        ("feat:no space", Bump.NONE),
    ],
)
def test_examples_read_as_semantic_release_reads_them(message: str, bump: Bump) -> None:
    assert bump_of(message) is bump
    assert psr_bump(message) == TO_PSR[bump]


WORDS = st.sampled_from(
    ["BREAKING CHANGE:", "BREAKING-CHANGE:", "Refs:", "a", "word", "x-", "\n", "\n\n", " ", ":"]
)
HEADERS = st.builds(
    lambda kind, scope, bang, sep, subject: f"{kind}{scope}{bang}{sep}{subject}",
    st.sampled_from([*TYPES, "feature", "Fix", "wip"]),
    st.sampled_from(["", "(api)", "(a b)", "()"]),
    st.sampled_from(["", "!"]),
    st.sampled_from([": ", ":", ":  ", " : "]),
    st.lists(WORDS, max_size=4).map("".join),
)
BODIES = st.lists(WORDS | st.text(alphabet="ab -:\n", max_size=6), max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(HEADERS, st.sampled_from(["", "\n", "\n\n", "\n\n\n"]), BODIES)
def test_any_message_reads_as_semantic_release_reads_it(header: str, gap: str, body: str) -> None:
    message = header + gap + body
    assert TO_PSR[bump_of(message)] == psr_bump(message), repr(message)


def test_the_next_version_takes_the_largest_bump_since_the_latest_release() -> None:
    history = MemoryHistory(
        [
            ("feat!: 1.0", ("v1.0.0",)),
            ("feat: more", ("v1.1.0", "nightly")),
            ("fix: a", ()),
            ("docs: b", ()),
        ]
    )
    current = latest_release(history)
    assert current == Version(1, 1, 0)
    assert next_version(current, history.messages_since(current.tag)) == Version(1, 1, 1)
    assert next_version(current, ["feat: x", "fix: y"]) == Version(1, 2, 0)
    assert next_version(current, ["docs: x"]) == current
    # Nothing released yet: counted from 0.0.0, and a breaking change below 1.0 makes 1.0.0.
    assert next_version(None, ["fix: x"]) == Version(0, 0, 1)
    assert next_version(None, ["feat: x"]) == Version(0, 1, 0)
    assert next_version(Version(0, 4, 2), ["feat!: x"]) == Version(1, 0, 0)
    assert latest_release(MemoryHistory([("x", ("1.0.0", "vnext", "v01.2.3"))])) is None
