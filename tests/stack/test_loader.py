from __future__ import annotations

import re
import time
from pathlib import Path
from textwrap import dedent

import pytest

from nuvem.errors import SpecError
from nuvem.stack.loader import load_stack, load_stack_text
from nuvem.stack.stack import Stack

EXAMPLE = """\
functions:
  echo:
    handler: functions:echo          # module:callable, resolved from the stack file's folder
  classify:
    handler: functions:Classifier    # a class: setup() once, then __call__(req)
    requirements: [scikit-learn==1.5.2]
    resources: {cpu: 1, memory: 512Mi}
    scaling: {min: 1, max: 4}
    timeout: 30s
    max_inflight: 4
    idempotent: true
"""


def load(text: str, root: Path = Path("/srv/app")) -> Stack:
    return load_stack_text(dedent(text), "nuvem.yaml", root)


def problem(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        load(text)
    message = str(caught.value)
    # Whatever went wrong, the user reads our words, not pydantic's internals.
    assert "pydantic" not in message
    assert "Value error" not in message
    assert "Extra inputs are not permitted" not in message
    return message


def test_the_example_stack_loads(tmp_path: Path) -> None:
    (tmp_path / "nuvem.yaml").write_text(EXAMPLE)

    stack = load_stack(tmp_path / "nuvem.yaml")

    assert list(stack.functions) == ["echo", "classify"]
    echo, classify = stack.functions["echo"], stack.functions["classify"]
    assert echo.name == "echo"
    assert echo.handler == "functions:echo"
    assert echo.root == str(tmp_path.resolve())
    assert classify.handler == "functions:Classifier"
    assert classify.requirements == ("scikit-learn==1.5.2",)
    assert classify.resources.cpu == 1.0
    assert classify.resources.memory == 512 * 2**20
    assert (classify.scaling.min, classify.scaling.max) == (1, 4)
    assert classify.timeout == 30.0
    assert classify.max_inflight == 4
    assert classify.idempotent is True
    assert classify.root == str(tmp_path.resolve())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """\
            functions:
              echo:
                handler: functions:echo
                requirments: [numpy]
            """,
            "nuvem.yaml:4: functions.echo.requirments: unknown field 'requirments'; "
            "did you mean 'requirements'?",
            id="unknown-field",
        ),
        pytest.param(
            """\
            functions:
              echo:
                handler: functions:echo
                resources:
                  gpus: 1
            """,
            "nuvem.yaml:5: functions.echo.resources.gpus: unknown field 'gpus'; "
            "did you mean 'gpu'?",
            id="unknown-nested-field",
        ),
        pytest.param(
            "funtions: {}\n",
            "nuvem.yaml:1: funtions: unknown field 'funtions'; did you mean 'functions'?",
            id="unknown-top-level-field",
        ),
        pytest.param(
            """\
            functions:
              echo:
                handler: functions:echo
                colour: blue
            """,
            # the list grows with the model; its start and order are what users read first
            "nuvem.yaml:4: functions.echo.colour: unknown field 'colour'; valid fields are "
            "handler, root, requirements, env, resources, scaling, timeout, max_inflight, ",
            id="unknown-field-without-a-close-match",
        ),
        pytest.param(
            """\
            functions:
              echo:
                handler: functions:echo

                timeout: soon
            """,
            "nuvem.yaml:5: functions.echo.timeout: 'soon' is not a duration; "
            "write e.g. 30s, 500ms, 2m or 1h",
            id="bad-duration",
        ),
        pytest.param(
            """\
            functions:
              echo:
                handler: functions:echo
                resources: {cpu: 1, memory: lots}
            """,
            "nuvem.yaml:4: functions.echo.resources.memory: 'lots' is not a memory size; "
            "write e.g. 512Mi or 2Gi",
            id="bad-memory",
        ),
        pytest.param(
            """\
            functions:
              echo:
                handler: functions:echo
                max_body: huge
            """,
            "nuvem.yaml:4: functions.echo.max_body: 'huge' is not a memory size; "
            "write e.g. 512Mi or 2Gi",
            id="bad-max-body",
        ),
        pytest.param(
            """\
            functions:
              echo:
                handler: functions:echo
                scaling:
                  min: 5
                  max: 2
            """,
            "nuvem.yaml:4: functions.echo.scaling: min (5) is larger than max (2); set min <= max",
            id="min-above-max",
        ),
        pytest.param(
            """\
            functions:
              Echo_Fn:
                handler: functions:echo
            """,
            "nuvem.yaml:2: functions.Echo_Fn.name: function name 'Echo_Fn' is invalid; "
            "use lowercase letters, digits and '-', starting with a letter",
            id="bad-function-name",
        ),
        pytest.param(
            """\
            functions:
              1:
                handler: functions:echo
            """,
            "nuvem.yaml:2: functions.1.name: function name '1' is invalid",
            id="number-as-function-name",
        ),
        pytest.param(
            """\
            functions:
              echo:
                handler: functions:echo
                max_inflight: four
            """,
            "nuvem.yaml:4: functions.echo.max_inflight: expected a whole number, got 'four'",
            id="wrong-type-int",
        ),
        pytest.param(
            """\
            functions:
              echo:
                handler: functions:echo
                idempotent: maybe
            """,
            "nuvem.yaml:4: functions.echo.idempotent: expected true or false, got 'maybe'",
            id="wrong-type-bool",
        ),
        pytest.param(
            """\
            functions:
              echo:
                handler: [functions, echo]
            """,
            "nuvem.yaml:3: functions.echo.handler: expected text, got a list; put it in quotes",
            id="wrong-type-text",
        ),
        pytest.param(
            """\
            functions:
              echo: functions:echo
            """,
            "nuvem.yaml:2: functions.echo: expected a mapping of `key: value` lines, "
            "got 'functions:echo'",
            id="function-is-not-a-mapping",
        ),
        pytest.param(
            """\
            functions:
              echo:
            """,
            "nuvem.yaml:2: functions.echo: is empty; give it `key: value` lines",
            id="function-is-empty",
        ),
        pytest.param(
            """\
            functions:
              echo:
                handler: functions:echo
                requirements:
                  - numpy
                  - 2
            """,
            "nuvem.yaml:6: functions.echo.requirements[1]: expected text, got 2",
            id="wrong-type-in-a-list",
        ),
        pytest.param(
            """\
            functions:
              echo:
                timeout: 5s
            """,
            "nuvem.yaml:2: functions.echo.handler: required field 'handler' is missing; "
            "add `handler:` (module:callable",
            id="missing-field-points-at-its-parent",
        ),
        pytest.param(
            """\
            functions:
              echo:
                handler: functions:echo
                resources: {cpu: 0}
            """,
            "nuvem.yaml:4: functions.echo.resources.cpu: input should be greater than 0, got 0",
            id="out-of-range",
        ),
        pytest.param(
            """\
            functions:
              echo:
                handler: a
              echo:
                handler: b
            """,
            "nuvem.yaml:4: functions.echo: 'echo' is already defined on line 2; "
            "rename or remove one of them",
            id="duplicate-function",
        ),
    ],
)
def test_a_bad_value_is_named_with_its_line_and_fix(text: str, expected: str) -> None:
    assert expected in problem(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """\
            functions:
              echo:
                handler: functions: echo
            """,
            "nuvem.yaml:3: invalid YAML: mapping values are not allowed here; "
            "quote a value that contains ': '",
            id="colon-in-value",
        ),
        pytest.param(
            "functions:\n\techo: {}\n",
            "nuvem.yaml:2: invalid YAML: found character '\\t' that cannot start any token",
            id="tab",
        ),
        pytest.param(
            """\
            functions:
              echo:
                handler: 'functions:echo
                timeout: 5s
            """,
            "nuvem.yaml:3: invalid YAML: found unexpected end of stream; "
            "close the quote or bracket opened here",
            id="unclosed-quote",
        ),
        pytest.param(
            """\
            functions:
              echo:
                handler: functions:echo
               timeout: 5s
            """,
            "nuvem.yaml:4: invalid YAML:",
            id="bad-indentation",
        ),
        pytest.param(
            "functions: {}\n---\nfunctions: {}\n",
            "nuvem.yaml:2: invalid YAML: but found another document",
            id="two-documents",
        ),
        pytest.param(
            "functions: !!python/object/apply:os.system [echo]\n",
            "nuvem.yaml:1: invalid YAML: could not determine a constructor",
            id="python-tag",
        ),
    ],
)
def test_a_yaml_syntax_error_names_file_and_line(text: str, expected: str) -> None:
    assert expected in problem(text)


def test_all_problems_are_listed_in_file_order() -> None:
    message = problem(
        """\
        functions:
          echo:
            handler: functions:echo
            timeout: soon
          Bad:
            handler: functions:echo
            requirments: []
        """
    )

    lines = message.splitlines()
    assert lines[0] == "nuvem.yaml has 3 problems:"
    assert [line.split(":")[1] for line in lines[1:]] == ["4", "5", "7"]


def test_a_missing_file_suggests_init_or_f(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_stack(tmp_path / "nuvem.yaml")

    message = str(caught.value)
    assert str(tmp_path / "nuvem.yaml") in message
    assert "nuvem init" in message
    assert "-f" in message


def test_the_file_path_labels_the_errors(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text("functions:\n  echo:\n    handler: x:y\n    timeout: soon\n")

    with pytest.raises(SpecError, match=rf"^{re.escape(str(path))}:4: functions\.echo\.timeout"):
        load_stack(path)


def test_a_folder_is_not_a_stack_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="is a folder"):
        load_stack(tmp_path)


def test_a_file_that_is_not_utf8_says_so(tmp_path: Path) -> None:
    path = tmp_path / "nuvem.yaml"
    path.write_bytes(b"functions:\n  echo:\n    handler: caf\xe9:x\n")

    with pytest.raises(SpecError, match="not UTF-8"):
        load_stack(path)


@pytest.mark.parametrize(
    "text", ["", "\n", "# nothing yet\n", "version: '1'\n", "functions:\n", "functions: {}\n"]
)
def test_a_file_without_functions_is_an_empty_stack(text: str) -> None:
    assert load(text).functions == {}


@pytest.mark.parametrize(("text", "kind"), [("- echo\n", "a list"), ("echo\n", "'echo'")])
def test_the_top_level_must_be_a_mapping(text: str, kind: str) -> None:
    assert problem(text) == (
        "nuvem.yaml:1: the stack file must be a mapping of `key: value` lines "
        f"with `functions:` at the top, not {kind}"
    )


def test_roots_resolve_against_the_stack_files_folder(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    stack = load(
        f"""\
        functions:
          here:
            handler: functions:echo
          below:
            handler: functions:echo
            root: src/app
          above:
            handler: functions:echo
            root: ../shared
          absolute:
            handler: functions:echo
            root: {elsewhere}
        """,
        root=tmp_path / "project",
    )

    roots = {name: spec.root for name, spec in stack.functions.items()}
    base = (tmp_path / "project").resolve()
    assert roots == {
        "here": str(base),
        "below": str(base / "src" / "app"),
        "above": str(tmp_path.resolve() / "shared"),
        "absolute": str(elsewhere.resolve()),
    }


def test_a_relative_stack_path_gives_absolute_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "nuvem.yaml").write_text(EXAMPLE)
    monkeypatch.chdir(tmp_path)

    stack = load_stack(Path("nuvem.yaml"))

    assert {spec.root for spec in stack.functions.values()} == {str(tmp_path.resolve())}


def test_requirements_as_a_list() -> None:
    stack = load(
        """\
        functions:
          echo:
            handler: functions:echo
            requirements:
              - numpy==2.1.0
              - pillow
        """
    )

    assert stack.functions["echo"].requirements == ("numpy==2.1.0", "pillow")


def test_requirements_as_a_multi_line_string_drop_blanks_and_comments() -> None:
    stack = load(
        """\
        functions:
          echo:
            handler: functions:echo
            requirements: |
              # pinned for the model
              numpy==2.1.0  # the ABI the weights need

              pillow
        """
    )

    assert stack.functions["echo"].requirements == ("numpy==2.1.0", "pillow")


def test_yaml_scalars_that_are_not_text_still_load() -> None:
    stack = load(
        """\
        version: 1
        functions:
          echo:
            handler: functions:echo
            env: {DEBUG: true, WORKERS: 4, EMPTY: }
        """
    )

    assert stack.version == "1"
    assert stack.functions["echo"].env == {"DEBUG": "true", "WORKERS": "4", "EMPTY": ""}


def test_anchors_and_merge_keys_share_settings() -> None:
    stack = load(
        """\
        functions:
          small: &small
            handler: functions:echo
            timeout: 5s
            resources: {memory: 256Mi}
          large:
            <<: *small
            timeout: 1m
        """
    )

    large = stack.functions["large"]
    assert (large.name, large.timeout, large.resources.memory) == ("large", 60.0, 256 * 2**20)


def test_errors_inside_merged_values_point_at_the_anchor() -> None:
    message = problem(
        """\
        functions:
          small: &small
            handler: functions:echo
            timeout: soon
          large:
            <<: *small
        """
    )

    assert "nuvem.yaml:4: functions.large.timeout: 'soon' is not a duration" in message


def test_an_alias_bomb_is_refused_quickly() -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    started = time.monotonic()

    message = problem("\n".join(levels) + "\n")

    assert "expands to more than" in message
    assert time.monotonic() - started < 10


def test_a_value_that_contains_itself_is_an_error_not_a_hang() -> None:
    message = problem("functions: &f {echo: *f}\n")

    assert "nuvem.yaml:1: functions.echo.handler: required field 'handler'" in message


def test_max_body_alone_keeps_the_replicas(tmp_path: Path) -> None:
    """The gateway enforces max_body, so changing only it must not roll replicas over."""
    plain = load_stack_text("functions: {echo: {handler: 'f:echo'}}", "nuvem.yaml", tmp_path)
    limited = load_stack_text(
        "functions: {echo: {handler: 'f:echo', max_body: 1Mi}}", "nuvem.yaml", tmp_path
    )
    before, after = plain.functions["echo"], limited.functions["echo"]
    assert after.max_body == 2**20
    assert before.max_body is None
    assert before.fingerprint() == after.fingerprint()
    assert before != after


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("?", "None: keys should be strings"),  # atheris found it: a KeyError, not a SpecError
        ("~: 1", "None: keys should be strings"),
        ("1.5: 2", "1.5: keys should be strings"),
        ("functions: {null: {handler: 'a:b'}}", "functions.None.name"),
    ],
)
def test_a_key_that_is_neither_text_nor_a_number_is_a_spec_error(text: str, named: str) -> None:
    with pytest.raises(SpecError, match=re.escape(named)):
        load_stack_text(text, "nuvem.yaml", Path("/nonexistent-root"))
