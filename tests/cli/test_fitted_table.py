"""Tables fit an 80-column terminal by dropping the least useful columns first."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from nuvem.cli.fitted_table import Column, show, shown_columns
from nuvem.cli.functions import LS_COLUMNS
from nuvem.cli.jobs import JOB_COLUMNS
from nuvem.cli.keys import KEY_COLUMNS
from nuvem.cli.top import FUNCTION_COLUMNS

JOB = (
    "d1561466-1324-4851-bb30-e12c7a9fc3ae",
    "resnet18-eager",
    "succeeded",
    "1",
    "200",
    "12-02 08:03:33",
    "delivered",
)
FUNCTION = (
    "resnet18-eager",
    "degraded",
    "3/4",
    "127.0.0.2 (2), 127.0.0.3",
    "12",
    "40",
    "1234567",
    "1.4.2",
    "3f2a9c1e0b7d",
    "nuvem.models.handler:ModelHandler",
)


def printed(
    columns: tuple[Column, ...], rows: list[tuple[str, ...]], width: int, wide: bool
) -> str:
    buffer = io.StringIO()
    show(Console(file=buffer, width=width), columns, rows, wide=wide)
    return buffer.getvalue()


def test_jobs_fit_80_columns_and_say_what_they_left_out() -> None:
    text = printed(JOB_COLUMNS, [JOB], 80, wide=False)
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert JOB[0] in text  # the id whole, so it can be copied
    assert "--wide shows them" in text
    assert "CALLBACK" in text.splitlines()[-1]


def test_wide_shows_every_column_whole() -> None:
    text = printed(JOB_COLUMNS, [JOB], 80, wide=True)
    assert all(cell in text for cell in JOB if cell)
    assert "--wide" not in text


def test_functions_fit_80_columns() -> None:
    text = printed(LS_COLUMNS, [FUNCTION], 80, wide=False)
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "resnet18-eager" in text
    assert "127.0.0.2 (2), 127.0.0.3" in text  # where replicas run outlives the counters


def test_top_and_keys_fit_80_columns() -> None:
    top = ("hello", "concurrency", "3/4 (+1)", "1-8", "4", "0", "12.5", "3 ms", "x " * 60)
    key = ("af1883cb0a0e", "ci", "echo, hello, " * 8, "5/s, 7 at once", "2026-12-02 08:02", "")
    for columns, row in ((FUNCTION_COLUMNS, top), (KEY_COLUMNS, key)):
        text = printed(columns, [row], 80, wide=False)
        assert all(len(line) <= 80 for line in text.splitlines()), text


columns_strategy = st.lists(
    st.builds(Column, st.text(min_size=1, max_size=10), st.integers(0, 5), st.booleans()),
    min_size=1,
    max_size=8,
)


@given(columns_strategy, st.integers(10, 200), st.data())
def test_only_droppable_columns_go_and_order_is_kept(
    columns: list[Column], width: int, data: st.DataObject
) -> None:
    rows = data.draw(st.lists(st.tuples(*[st.text(max_size=30) for _ in columns]), max_size=4))
    keep = shown_columns(columns, rows, width)
    assert keep == sorted(keep)
    assert all(i in keep for i, c in enumerate(columns) if not c.drop)
    dropped = [columns[i].drop for i in range(len(columns)) if i not in keep]
    kept = [columns[i].drop for i in keep if columns[i].drop]
    # The most droppable go first: nothing kept is more droppable than something dropped.
    assert not dropped or not kept or max(kept) <= min(dropped)
    assert shown_columns(columns, rows, None) == list(range(len(columns)))
