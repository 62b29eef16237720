"""Open Inference Protocol (KServe V2) REST bodies to and from the tensor envelope.

Inputs arrive as JSON `data` or, with the binary tensor extension, as raw bytes after a JSON
header of `Inference-Header-Content-Length` bytes; either way they leave the gateway as raw
bytes (runtime/tensors.py). No numpy here: the gateway runs without the models extra.
"""

from __future__ import annotations

import array
import json
import math
import os
import struct
import sys
from dataclasses import dataclass, field
from typing import Any

from nuvem.errors import BadRequest
from nuvem.runtime import tensors
from nuvem.runtime.tensors import ITEM_SIZE, Tensor, TensorError

# array typecodes per datatype (sizes checked at import); FP16, BOOL and BYTES are special.
_TYPECODES = {
    "INT8": "b",
    "UINT8": "B",
    "INT16": "h",
    "UINT16": "H",
    "INT32": "i",
    "UINT32": "I",
    "INT64": "q",
    "UINT64": "Q",
    "FP32": "f",
    "FP64": "d",
}
assert all(array.array(c).itemsize == ITEM_SIZE[t] for t, c in _TYPECODES.items())
_SWAP = sys.byteorder == "big"  # the protocol's bytes are little-endian


@dataclass(slots=True)
class OutputRequest:
    name: str
    binary: bool
    classification: int = 0


@dataclass(slots=True)
class InferRequest:
    id: str
    inputs: list[Tensor]
    outputs: list[OutputRequest] | None  # None: every output
    binary_output: bool  # the default for outputs not listed by name
    parameters: dict[str, Any] = field(default_factory=dict)

    def envelope(self) -> bytes:
        wanted = None
        if self.outputs is not None:
            wanted = [{"name": o.name, "classification": o.classification} for o in self.outputs]
        return tensors.encode(self.inputs, {"outputs": wanted} if wanted else {})


def decode_request(body: bytes, header_length: str | None) -> InferRequest:
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise BadRequest(
                f"Inference-Header-Content-Length {header_length!r} is not a number"
            ) from None
        if not 0 <= size <= len(body):
            raise BadRequest(
                f"Inference-Header-Content-Length {size} exceeds the body's {len(body)} bytes"
            )
        header_bytes, binary = body[:size], memoryview(body)[size:]
    else:
        header_bytes, binary = body, memoryview(b"")
    try:
        header = json.loads(header_bytes)
    except ValueError as exc:
        raise BadRequest(
            f"the inference request is not valid JSON: {exc}",
            "send the V2 JSON body; with binary tensors, set Inference-Header-Content-Length",
        ) from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise BadRequest('the inference request needs "inputs": a list of tensors')
    parameters = header.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest('"parameters" must be an object')
    inputs, offset = [], 0
    for raw in header["inputs"]:
        tensor, offset = _input(raw, binary, offset)
        inputs.append(tensor)
    if offset != len(binary):
        raise BadRequest(
            f"the binary data holds {len(binary)} bytes but the inputs' binary_data_size "
            f"add up to {offset}"
        )
    binary_default = bool(parameters.get("binary_data_output", False))
    outputs = None
    if header.get("outputs") is not None:
        if not isinstance(header["outputs"], list):
            raise BadRequest('"outputs" must be a list')
        outputs = [_output(raw, binary_default) for raw in header["outputs"]]
    request_id = header.get("id")
    return InferRequest(
        str(request_id) if request_id is not None else os.urandom(8).hex(),
        inputs,
        outputs,
        binary_default,
        parameters,
    )


def _input(raw: Any, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    if not isinstance(raw, dict):
        raise BadRequest("each input must be an object with name, shape, datatype and data")
    try:
        name = str(raw["name"])
        datatype = str(raw["datatype"]).upper()
        shape = tuple(int(d) for d in raw["shape"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise BadRequest(f"input {raw.get('name', '?')!r} needs name, shape and datatype") from (
            exc
        )
    if datatype != "BYTES" and datatype not in ITEM_SIZE:
        raise BadRequest(
            f"input {name!r}: unknown datatype {datatype!r}",
            f"use one of {', '.join([*ITEM_SIZE, 'BYTES'])}",
        )
    params = raw.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        try:
            size = int(size)
        except (TypeError, ValueError, OverflowError):
            raise BadRequest(f"input {name!r}: binary_data_size must be a number") from None
        if size < 0 or offset + size > len(binary):
            raise BadRequest(
                f"input {name!r}: binary_data_size {size} runs past the binary data "
                f"({len(binary)} bytes after the header)"
            )
        data: bytes | memoryview = binary[offset : offset + size]
        offset += size
    elif "data" in raw:
        data = _pack(name, datatype, shape, raw["data"])
    else:
        raise BadRequest(f"input {name!r} has neither data nor binary_data_size")
    tensor = Tensor(name, datatype, shape, data)
    try:
        tensor.check()
    except TensorError as exc:
        raise BadRequest(str(exc)) from None
    return tensor, offset


def _output(raw: Any, binary_default: bool) -> OutputRequest:
    if not isinstance(raw, dict) or "name" not in raw:
        raise BadRequest("each requested output must be an object with a name")
    params = raw.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest(f'output {raw["name"]!r}: "parameters" must be an object')
    try:
        classes = int(params.get("classification", 0) or 0)
    except (TypeError, ValueError, OverflowError):
        raise BadRequest(f"output {raw['name']!r}: classification must be a number") from None
    if classes < 0:
        raise BadRequest(f"output {raw['name']!r}: classification must not be negative")
    return OutputRequest(str(raw["name"]), bool(params.get("binary_data", binary_default)), classes)


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _pack(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> bytes:
    values = _flatten(data)
    if len(values) != math.prod(shape):
        raise BadRequest(
            f"input {name!r}: shape {list(shape)} needs {math.prod(shape)} values, "
            f"data has {len(values)}"
        )
    try:
        if datatype == "BYTES":
            return tensors.join_bytes(
                v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values
            )
        if datatype == "BOOL":
            return bytes(1 if v else 0 for v in values)
        if datatype == "FP16":
            return struct.pack(f"<{len(values)}e", *values)
        if datatype == "BF16":
            raise BadRequest(
                f"input {name!r}: BF16 cannot be sent as JSON", "send it as binary data"
            )
        packed = array.array(_TYPECODES[datatype], values)
    except (TypeError, OverflowError, struct.error) as exc:
        raise BadRequest(f"input {name!r}: data does not fit {datatype}: {exc}") from None
    if _SWAP:
        packed.byteswap()
    return packed.tobytes()


def _unpack(tensor: Tensor) -> list[Any]:
    if tensor.datatype == "BYTES":
        return [e.decode("utf-8", "replace") for e in tensors.split_bytes(tensor.data)]
    if tensor.datatype == "BOOL":
        return [bool(b) for b in bytes(tensor.data)]
    if tensor.datatype == "FP16":
        return list(struct.unpack(f"<{len(tensor.data) // 2}e", tensor.data))
    code = _TYPECODES.get(tensor.datatype)
    if code is None:
        raise BadRequest(
            f"output {tensor.name!r} is {tensor.datatype}, which JSON cannot carry",
            "ask for it as binary data",
        )
    values = array.array(code, bytes(tensor.data))
    if _SWAP:
        values.byteswap()
    return values.tolist()


def encode_response(
    model: str, version: str, request: InferRequest, outputs: list[Tensor]
) -> tuple[bytes, int | None]:
    """The response body and, when it carries binary outputs, the JSON header's length."""
    binary_of = {o.name: o.binary for o in request.outputs or ()}
    entries, blobs = [], []
    for tensor in outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if binary_of.get(tensor.name, request.binary_output):
            entry["parameters"] = {"binary_data_size": len(tensor.data)}
            blobs.append(tensor.data)
        else:
            entry["data"] = _unpack(tensor)
        entries.append(entry)
    header = json.dumps(
        {"model_name": model, "model_version": version, "id": request.id, "outputs": entries},
        separators=(",", ":"),
    ).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
