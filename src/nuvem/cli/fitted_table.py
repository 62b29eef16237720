"""Tables that stay readable in an 80-column terminal.

Each column says how it may give way: `drop` columns go first when the terminal is too
narrow (highest `drop` first), a `flex` column (one per table: a message, a decision) is cut
or folded to what is left, and the rest are kept whole. `--wide` keeps every column. A
footnote names what was left out, so nothing disappears silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

PADDING = 2  # between two columns of a box-less rich table
NARROWEST_FLEX = 12


@dataclass(frozen=True)
class Column:
    header: str
    drop: int = 0  # 0: always shown; else dropped when narrow, the highest first
    flex: bool = False  # takes what room is left (cut or folded, not dropped)
    justify: Literal["left", "right"] = "left"
    overflow: Literal["fold", "ellipsis"] = "ellipsis"


def shown_columns(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int | None
) -> list[int]:
    """The indices of the columns that fit `width` (None: all), in their order."""
    keep = list(range(len(columns)))
    if width is None:
        return keep

    def need(index: int) -> int:
        cells = [len(row[index]) for row in rows]
        natural = max([len(columns[index].header), *cells])
        return min(natural, NARROWEST_FLEX) if columns[index].flex else natural

    droppable = sorted((i for i, c in enumerate(columns) if c.drop), key=lambda i: -columns[i].drop)
    while sum(need(i) for i in keep) + PADDING * (len(keep) - 1) > width and droppable:
        keep.remove(droppable.pop(0))
    return keep


def fitted(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    width: int | None,
    title: str | None = None,
) -> RenderableType:
    """A rich table of the columns that fit in `width` (None: every column), with a
    footnote naming any left out."""
    keep = shown_columns(columns, rows, width)
    table = Table(
        box=None,
        header_style="bold",
        title=title,
        title_justify="left",
        pad_edge=False,
        expand=False,
    )
    for index in keep:
        column = columns[index]
        table.add_column(
            column.header,
            justify=column.justify,
            no_wrap=not column.flex,
            overflow=column.overflow if column.flex else "ellipsis",
            min_width=None if column.flex else len(column.header),
        )
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    hidden = [columns[i].header for i in range(len(columns)) if i not in keep]
    if not hidden:
        return table
    note = Text(f"({', '.join(hidden)} not shown at this width; --wide shows them)", style="dim")
    return Group(table, note)


def show(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    wide: bool,
    title: str | None = None,
) -> None:
    """Print the table fitted to the terminal, or whole with `wide` (as wide as it is)."""
    if not wide:
        console.print(fitted(columns, rows, width=console.width, title=title))
        return
    # Console.print's width= is capped at the console's own: a console of its own then.
    whole = Console(file=console.file, width=WIDEST, force_terminal=console.is_terminal)
    whole.print(fitted(columns, rows, width=None, title=title))


WIDEST = 4096  # --wide: lines as long as the table needs (a pager or less -S can scroll)
