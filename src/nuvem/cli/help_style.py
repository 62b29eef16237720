"""How `--help` names things: `NAME` and `[NAME]` for arguments, `INTEGER` or `PATH` for option
values and nothing after a flag, as click always showed them.

Typer 0.29 shows `{name}` in usage lines, `<str>` beside arguments and `<bool>` after flags,
which reads as template syntax to people used to every other CLI. Typer offers no setting for
it, so its display methods are replaced on its parameter classes; tests/cli read the
help text, so a Typer upgrade that renames them fails there rather than silently.
"""

from __future__ import annotations

from typer import _click
from typer.core import TyperArgument, TyperOption

# Typer's type labels, as click names them.
_LABELS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "bool": "BOOLEAN"}


def _argument_name(argument: TyperArgument) -> str:
    return (argument.metavar or argument.name or "").upper()


def _usage_name(argument: TyperArgument) -> str:
    name = _argument_name(argument)
    name = name if argument.required else f"[{name}]"
    return name + ("..." if argument.nargs != 1 else "")


def _argument_type(argument: TyperArgument, ctx: _click.Context) -> str | None:
    return None  # the upper-case name already says what goes there


_typer_option_type = TyperOption.display_type_rich


def _option_type(option: TyperOption, ctx: _click.Context) -> str | None:
    if option.is_flag:
        return None
    if option.metavar is not None:
        return option.metavar
    shown = _typer_option_type(option, ctx)
    if shown is None:
        return None
    label, dots = shown.removesuffix("..."), "..." if shown.endswith("...") else ""
    bare = label.removeprefix("<").removesuffix(">")
    if bare.startswith("list[") and bare.endswith("]"):  # a repeatable option: one value each
        bare = bare[len("list[") : -1]
    return _LABELS.get(bare, bare.upper()) + dots


def apply() -> None:
    # setattr: mypy refuses assignment to a method, and these are meant as replacements.
    setattr(TyperArgument, "_usage_display_name", _usage_name)  # noqa: B010
    setattr(TyperArgument, "display_name_raw", property(_argument_name))  # noqa: B010
    setattr(TyperArgument, "display_type_rich", _argument_type)  # noqa: B010
    setattr(TyperOption, "display_type_rich", _option_type)  # noqa: B010
