"""The autoscaler's settings in a stack file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nuvem.errors import SpecError
from nuvem.stack.loader import load_stack_text
from nuvem.stack.stack import Stack


def load(text: str) -> Stack:
    return load_stack_text(textwrap.dedent(text), "nuvem.yaml", Path("/"))


def test_scaling_settings_take_units_and_defaults() -> None:
    stack = load(
        """
        functions:
          f:
            handler: m:f
            scaling: {min: 0, max: 5, mode: rps, target: 20, panic_window_s: 500ms,
                      scale_down_delay_s: 0, zero_after_s: 2m}
        """
    )
    scaling = stack.functions["f"].scaling
    assert (scaling.mode, scaling.target) == ("rps", 20)
    assert (scaling.panic_window_s, scaling.stable_window_s) == (0.5, 60.0)
    assert (scaling.scale_down_delay_s, scaling.zero_after_s) == (0.0, 120.0)


@pytest.mark.parametrize(
    ("scaling", "expected"),
    [
        (
            "{mode: fast}",
            "scaling.mode: input should be 'concurrency', 'rps' or 'queue', got 'fast'",
        ),
        ("{mode: rps}", "mode rps needs a target"),
        ("{panic_window_s: 2m, stable_window_s: 1m}", "the panic window is the short one"),
    ],
)
def test_bad_scaling_settings_name_the_line_and_the_fix(scaling: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        load(f"functions:\n  f:\n    handler: m:f\n    scaling: {scaling}\n")
    assert "nuvem.yaml:4" in str(caught.value)
    assert expected in str(caught.value)
