"""The autoscaler's settings in a stack file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nuvem.errors import SpecError
from nuvem.stack.function import FunctionSpec
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


def test_bounds_that_reach_zero_mean_autoscaling() -> None:
    stack = load(
        """
        functions:
          zero: {handler: m:f, scaling: {min: 0, max: 2}}
          told: {handler: m:f, scaling: {min: 0, max: 2, zero_after_s: 5}}
          tuned: {handler: m:f, scaling: {max: 4, scale_down_delay_s: 10}}
          room: {handler: m:f, scaling: {min: 1, max: 4}}
          fixed: {handler: m:f, scaling: {min: 2, max: 2}}
          default: {handler: m:f}
          manual: {handler: m:f, scaling: {min: 0, max: 2, mode: null}}
        """
    )
    modes = {name: f.scaling.mode for name, f in stack.functions.items()}
    assert modes == {
        "zero": "concurrency",
        "told": "concurrency",
        "tuned": "concurrency",
        "room": "concurrency",  # bounds written with room between them: scale within them
        "fixed": None,
        "default": None,  # no bounds written: replicas as `nuvem scale` says
        "manual": None,
    }


def test_autoscaler_settings_next_to_mode_null_are_an_error_naming_the_line() -> None:
    with pytest.raises(SpecError) as raised:
        load("functions:\n  f:\n    handler: m:f\n    scaling: {mode: null, target: 3}\n")
    assert "nuvem.yaml:4" in str(raised.value)
    assert "target has no effect with mode: null" in str(raised.value)


def test_zero_after_s_without_min_0_is_an_error_naming_the_line() -> None:
    with pytest.raises(SpecError) as raised:
        load(
            """
            functions:
              f:
                handler: m:f
                scaling:
                  max: 2
                  zero_after_s: 5
            """
        )
    assert ":5: functions.f.scaling: zero_after_s has no effect with min 1" in str(raised.value)
    assert "set min: 0" in str(raised.value)


def test_a_spec_sent_by_the_api_is_taken_as_it_is() -> None:
    # Every field of a spec sent back by `nuvem deploy` is present: none was meant.
    sent = FunctionSpec(name="f", handler="m:f").model_dump(mode="json")
    assert FunctionSpec.model_validate(sent).scaling.mode is None
