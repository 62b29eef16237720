"""Every command's --help names arguments NAME, option values TEXT/INTEGER/PATH, flags bare."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from nuvem.cli.main import app


def commands(group: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    # Typer 0.29 carries its own copy of click: its groups are not click.Group.
    for name, command in getattr(group, "commands", {}).items():
        yield from commands(command, (*path, name))


ALL = list(commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path", ALL, ids=[" ".join(p) or "nuvem" for p in ALL])
def test_help_reads_like_a_cli(path: tuple[str, ...]) -> None:
    shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert not re.search(r"\{[a-z_]+\}", text), text  # no `{name}` templates
    assert not re.search(r"<(bool|str|int|float|path|list\[str\])>", text), text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert usage.split("Usage:")[1].split()[0] == "nuvem", usage


def test_arguments_are_upper_case_in_usage_table_and_errors() -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["scale", "--help"], env={"COLUMNS": "200"}).output
    assert "nuvem scale [OPTIONS] NAME REPLICAS" in shown
    assert re.search(r"\*\s+NAME\s", shown), shown
    missing = runner.invoke(app, ["scale"], env={"COLUMNS": "200"})
    assert missing.exit_code == 2
    assert "Missing argument 'NAME'" in missing.output


def test_flags_show_no_value_and_values_show_their_kind() -> None:
    shown = CliRunner().invoke(app, ["invoke", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--header\s+-H\s+TEXT\s", shown), shown
    assert re.search(r"--method\s+-X\s+METHOD\s", shown), shown
    flags = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--version\s+print the version", flags), flags
