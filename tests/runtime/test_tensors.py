"""The tensor envelope between gateway and replica: raw bytes, checked on the way in."""

from __future__ import annotations

import struct

import pytest

from nuvem.runtime import tensors
from nuvem.runtime.tensors import Tensor, TensorError


def test_tensors_round_trip_as_raw_bytes() -> None:
    floats = struct.pack("<6f", *range(6))
    words = tensors.join_bytes([b"cat", b"", b"\x00\xff"])
    body = tensors.encode(
        [Tensor("x", "FP32", (2, 3), floats), Tensor("s", "BYTES", (3,), words)],
        {"outputs": [{"name": "y"}]},
    )
    decoded, parameters = tensors.decode(body)
    assert parameters == {"outputs": [{"name": "y"}]}
    assert [(t.name, t.datatype, t.shape) for t in decoded] == [
        ("x", "FP32", (2, 3)),
        ("s", "BYTES", (3,)),
    ]
    assert bytes(decoded[0].data) == floats  # the very bytes, never a JSON list
    assert tensors.split_bytes(decoded[1].data) == [b"cat", b"", b"\x00\xff"]


@pytest.mark.parametrize(
    ("tensor", "problem"),
    [
        (Tensor("x", "FP32", (2, 2), b"\x00" * 12), "needs 16 bytes, got 12"),
        (Tensor("x", "FP7", (1,), b"\x00"), "unknown datatype 'FP7'"),
        (Tensor("s", "BYTES", (2,), tensors.join_bytes([b"a"])), "needs 2 BYTES elements"),
        (Tensor("s", "BYTES", (1,), b"\x05\x00\x00\x00ab"), "runs past the end"),
        (Tensor("x", "INT8", (-1,), b""), "negative size"),
    ],
)
def test_malformed_tensors_are_named(tensor: Tensor, problem: str) -> None:
    with pytest.raises(TensorError, match=problem):
        tensors.decode(tensors.encode([tensor]))


def test_a_truncated_envelope_is_an_error() -> None:
    body = tensors.encode([Tensor("x", "UINT8", (4,), b"abcd")])
    with pytest.raises(TensorError, match="outside the envelope"):
        tensors.decode(body[:-1])
    with pytest.raises(TensorError, match="does not fit the body"):
        tensors.decode(body[:6])
