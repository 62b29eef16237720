"""The tensor envelope: named tensors crossing between the gateway and a replica as raw bytes.

Layout: a 4-byte big-endian header length, a compact JSON header
`{"tensors": [{"name", "datatype", "shape", "offset", "size"}], "parameters": {...}}`, then
the tensors' bytes back to back (offsets count from the end of the header). Element bytes are
little-endian, as in the Open Inference Protocol's binary extension; BYTES tensors hold each
element as a 4-byte little-endian length and its bytes. A tensor is never re-encoded as a
JSON list between our own processes. Standard library only: it runs in every replica.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

CONTENT_TYPE = "application/x-nuvem-tensors"
_LENGTH = struct.Struct("!I")
_ELEMENT_LENGTH = struct.Struct("<I")
MAX_HEADER = 1 << 24

# Bytes per element; BYTES has none (its elements carry their own lengths).
ITEM_SIZE = {
    "BOOL": 1,
    "UINT8": 1,
    "INT8": 1,
    "UINT16": 2,
    "INT16": 2,
    "FP16": 2,
    "BF16": 2,
    "UINT32": 4,
    "INT32": 4,
    "FP32": 4,
    "UINT64": 8,
    "INT64": 8,
    "FP64": 8,
}


class TensorError(ValueError):
    """A tensor or envelope is malformed; the message names the tensor and the problem."""


@dataclass(slots=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes | memoryview
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    def check(self) -> None:
        """Raise TensorError unless the bytes fit the datatype and shape."""
        if any(dim < 0 for dim in self.shape):
            raise TensorError(f"tensor {self.name!r}: shape {list(self.shape)} has a negative size")
        if self.datatype == "BYTES":
            found = len(split_bytes(self.data, name=self.name))
            if found != self.count:
                raise TensorError(
                    f"tensor {self.name!r}: shape {list(self.shape)} needs {self.count} "
                    f"BYTES elements, the data holds {found}"
                )
            return
        size = ITEM_SIZE.get(self.datatype)
        if size is None:
            raise TensorError(
                f"tensor {self.name!r}: unknown datatype {self.datatype!r}; "
                f"use one of {', '.join([*ITEM_SIZE, 'BYTES'])}"
            )
        if len(self.data) != self.count * size:
            raise TensorError(
                f"tensor {self.name!r}: shape {list(self.shape)} of {self.datatype} needs "
                f"{self.count * size} bytes, got {len(self.data)}"
            )


def join_bytes(elements: Iterable[bytes]) -> bytes:
    """BYTES elements as the binary extension lays them out: length-prefixed, back to back."""
    return b"".join(_ELEMENT_LENGTH.pack(len(e)) + e for e in elements)


def split_bytes(data: bytes | memoryview, *, name: str = "BYTES") -> list[bytes]:
    view = memoryview(data)
    out: list[bytes] = []
    offset = 0
    while offset < len(view):
        if offset + 4 > len(view):
            raise TensorError(f"tensor {name!r}: BYTES data ends inside an element's length")
        (length,) = _ELEMENT_LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise TensorError(f"tensor {name!r}: a BYTES element runs past the end of the data")
        out.append(bytes(view[offset : offset + length]))
        offset += length
    return out


def encode(tensors: Sequence[Tensor], parameters: dict[str, Any] | None = None) -> bytes:
    entries = []
    offset = 0
    for tensor in tensors:
        size = len(tensor.data)
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
            "offset": offset,
            "size": size,
        }
        if tensor.parameters:
            entry["parameters"] = tensor.parameters
        entries.append(entry)
        offset += size
    header = json.dumps(
        {"tensors": entries, "parameters": parameters or {}}, separators=(",", ":")
    ).encode()
    return b"".join([_LENGTH.pack(len(header)), header, *(t.data for t in tensors)])


def decode(body: bytes) -> tuple[list[Tensor], dict[str, Any]]:
    """Tensors (as views on `body`, not copies) and the envelope's parameters."""
    if len(body) < _LENGTH.size:
        raise TensorError("tensor envelope is shorter than its header length")
    (length,) = _LENGTH.unpack_from(body)
    if length > MAX_HEADER or _LENGTH.size + length > len(body):
        raise TensorError(f"tensor envelope header of {length} bytes does not fit the body")
    try:
        header = json.loads(body[_LENGTH.size : _LENGTH.size + length])
        entries = header["tensors"]
        parameters = header.get("parameters") or {}
    except (ValueError, KeyError, TypeError) as exc:
        raise TensorError(f"tensor envelope header is not valid: {exc}") from exc
    data = memoryview(body)[_LENGTH.size + length :]
    tensors = []
    for entry in entries:
        try:
            name, offset, size = str(entry["name"]), int(entry["offset"]), int(entry["size"])
            tensor = Tensor(
                name,
                str(entry["datatype"]),
                tuple(int(d) for d in entry["shape"]),
                data[offset : offset + size],
                dict(entry.get("parameters") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TensorError(f"tensor envelope entry {entry!r} is not valid: {exc}") from exc
        if offset < 0 or offset + size > len(data):
            raise TensorError(f"tensor {name!r} lies outside the envelope's data")
        tensor.check()
        tensors.append(tensor)
    return tensors, dict(parameters)
