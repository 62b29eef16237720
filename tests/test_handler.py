"""The handler contract, without processes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nuvem import BodyError, Headers, HTTPError, Request, Response
from nuvem.handler import to_http


def test_headers_are_case_insensitive_and_keep_repeats() -> None:
    headers = Headers([("Content-Type", "a"), ("X-Many", "1"), ("x-many", "2")])
    assert headers["content-type"] == "a"
    assert "CONTENT-TYPE" in headers
    assert headers["X-MANY"] == "2"
    assert headers.getlist("x-many") == ["1", "2"]


def test_request_helpers() -> None:
    request = Request(b'{"a": 1}', "POST", "/x", "k=1&k=2&e=", Headers())
    assert request.json() == {"a": 1}
    assert request.query == {"k": "2", "e": ""}
    assert request.query_list == [("k", "1"), ("k", "2"), ("e", "")]
    with pytest.raises(ValueError, match="empty"):
        Request().json()


def test_response_headers_override_defaults() -> None:
    status, headers, body = to_http(Response(201, {"x": 1}, {"Content-Type": "application/x"}))
    assert status == 201
    assert body == b'{"x":1}'
    assert headers == [("Content-Type", "application/x")]


def test_unsupported_return_type_says_what_to_return() -> None:
    with pytest.raises(TypeError, match="return bytes, str, a dict or list"):
        to_http(object())


@given(st.binary())
def test_bytes_pass_through_unchanged(data: bytes) -> None:
    assert to_http(data)[2] == data


def test_unparseable_bodies_raise_body_error_that_is_a_400_and_a_value_error() -> None:
    for body in (b"", b"{", b"\xff"):
        with pytest.raises(BodyError) as caught:
            Request(body).json()
        assert caught.value.status == 400
        assert isinstance(caught.value, ValueError)  # old handlers catching ValueError still work
    with pytest.raises(BodyError, match="not UTF-8 text"):
        Request(b"\xff").text()


def test_http_error_is_only_4xx_and_answers_json() -> None:
    status, headers, body = HTTPError(429, "slow down").answer()
    assert (status, headers) == (429, [("content-type", "application/json")])
    assert json.loads(body) == {"error": "slow down"}
    for bad in (200, 399, 500):
        with pytest.raises(ValueError, match="not a 4xx"):
            HTTPError(bad, "x")
