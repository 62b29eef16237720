"""errors.py: one tree; a status read from an answer maps back to its error and exit code."""

from __future__ import annotations

import httpx
import pytest

from nuvem import errors
from nuvem.cli.client import response_error


@pytest.mark.parametrize(
    ("status", "kind", "exit_code"),
    [
        (400, errors.BadRequest, 2),
        (401, errors.Unauthorized, 3),
        (403, errors.Forbidden, 3),
        (404, errors.NotFound, 4),
        (409, errors.Conflict, 5),
        (413, errors.PayloadTooLarge, 2),
        (429, errors.Overloaded, 6),
        (500, errors.FunctionFailed, 7),
        (502, errors.ReplicaDied, 7),
        (503, errors.Unavailable, 8),
        (504, errors.DeadlineExceeded, 9),
    ],
)
def test_a_status_stands_for_its_error(
    status: int, kind: type[errors.NuvemError], exit_code: int
) -> None:
    error = errors.error_for_status(status, "what went wrong", "the fix")
    assert type(error) is kind
    assert (error.status, error.exit_code) == (status, exit_code)
    assert str(error) == "what went wrong (the fix)"


def test_other_statuses_exit_1() -> None:
    error = errors.error_for_status(418, "a teapot")
    assert (type(error), error.status, error.exit_code) == (errors.NuvemError, 418, 1)


def test_the_client_reads_the_error_of_an_answer() -> None:
    answer = httpx.Response(413, json={"error": "request body is larger than 64 MiB (send less)"})
    error = response_error(answer, "invoking echo: ")
    assert isinstance(error, errors.PayloadTooLarge)
    assert error.exit_code == 2
    assert str(error) == "invoking echo: request body is larger than 64 MiB (send less)"
