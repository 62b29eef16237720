"""The image fields of a function in a stack file: what is accepted, and the errors."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from nuvem.errors import SpecError
from nuvem.stack.container import DEFAULT_PORT
from nuvem.stack.loader import load_stack_text
from nuvem.stack.stack import Stack


def load(text: str) -> Stack:
    return load_stack_text(dedent(text), "nuvem.yaml", Path("/srv/app"))


def problem(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        load(text)
    return str(caught.value)


def test_an_image_function_with_every_field() -> None:
    stack = load(
        """
        functions:
          legacy-resize:
            image: localhost/resize:1.4.0
            port: 8080
            health: /_/health
            env: {MODE: fast, FAST: true}
            resources: {cpu: 1, memory: 512Mi}
            scaling: {min: 0, max: 4}
        """
    )
    spec = stack.functions["legacy-resize"]
    assert spec.image == "localhost/resize:1.4.0"
    assert spec.handler == ""
    assert spec.container_port == 8080
    assert spec.health == "/_/health"
    assert spec.env == {"MODE": "fast", "FAST": "true"}
    assert spec.resources.memory == 512 * 2**20


def test_the_port_defaults_to_of_watchdogs() -> None:
    spec = load("functions: {f: {image: 'localhost/x:1'}}").functions["f"]
    assert spec.container_port == DEFAULT_PORT == 8080
    assert spec.health is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ("{image: 'localhost/x:1', handler: 'm:f'}", "image and handler are exclusive"),
        (
            "{image: 'localhost/x:1', model: {arch: resnet18, weights: w.pth}}",
            "image and model are exclusive",
        ),
        ("{image: 'localhost/x:1', requirements: [numpy]}", "image and requirements"),
        ("{image: 'localhost/x:1', batching: {max_batch_size: 4}}", "image and batching"),
        ("{image: 'localhost/x:1', resources: {gpu: 1}}", "image and resources.gpu"),
        ("{handler: 'm:f', port: 8080}", "port applies to container functions only"),
        ("{handler: 'm:f', health: /h}", "health applies to container functions only"),
        ("{image: 'localhost/x:1', health: h}", "health 'h' is not a path"),
        ("{image: 'Not An Image'}", "is not an image reference"),
        ("{image: 'localhost/x:1', port: 70000}", "port"),
        ("{handler: ' '}", "handler is empty"),
    ],
)
def test_mixing_an_image_with_what_only_a_handler_has_is_an_error(
    fields: str, expected: str
) -> None:
    assert expected in problem(f"functions: {{f: {fields}}}")


def test_an_image_changes_the_fingerprint_but_handler_functions_keep_theirs() -> None:
    handler = load("functions: {f: {handler: 'm:f'}}").functions["f"]
    # What the fingerprint of a handler function was before images existed.
    assert "image" not in handler.model_dump(mode="json", exclude={"image", "port", "health"})
    one = load("functions: {f: {image: 'localhost/x:1'}}").functions["f"]
    two = load("functions: {f: {image: 'localhost/x:2'}}").functions["f"]
    assert one.fingerprint() != two.fingerprint()
    moved = load("functions: {f: {image: 'localhost/x:1', port: 9000}}").functions["f"]
    assert moved.fingerprint() != one.fingerprint()
