"""JSON Schemas of the Open Inference Protocol's (KServe V2) REST bodies, as the gateway reads
and writes them (gateway/oip_codec.py), for the OpenAPI document (model_openapi.py).

They state what every model takes; what one model takes (its inputs' names, datatypes and
shapes) is in its metadata, `GET /v2/models/{name}`, and a request that does not fit it is a
400 naming the mismatch."""

from __future__ import annotations

from typing import Any

from nuvem.runtime.tensors import ITEM_SIZE

DATATYPES = [*ITEM_SIZE, "BYTES"]
_SHAPE = {"type": "array", "items": {"type": "integer", "minimum": 0}}
_DATATYPE = {"type": "string", "enum": DATATYPES}
_BINARY_SIZE = {
    "type": "integer",
    "minimum": 0,
    "description": "this tensor's bytes in the binary data after the JSON header",
}

# What an input and an output tensor share; their `data` differ.
_TENSOR = {
    "name": {"type": "string"},
    "shape": _SHAPE,
    "datatype": _DATATYPE,
    "parameters": {"type": "object", "properties": {"binary_data_size": _BINARY_SIZE}},
}
INPUT: dict[str, Any] = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        **_TENSOR,
        "data": {
            "description": "the values, flat or nested, row-major; as many as the shape holds "
            "(BF16 only as binary data)"
        },
    },
    # Its values come as JSON `data`, or as binary data after the header.
    "anyOf": [
        {"required": ["data"]},
        {
            "required": ["parameters"],
            "properties": {"parameters": {"required": ["binary_data_size"]}},
        },
    ],
}
_REQUESTED_OUTPUT = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "parameters": {
            "type": "object",
            "properties": {
                "binary_data": {"type": "boolean", "description": "as binary data"},
                "classification": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "the top N classes as 'score:index[:label]' strings",
                },
            },
        },
    },
}
INFER_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string", "description": "answered back; one is made when absent"},
        "parameters": {
            "type": "object",
            "properties": {
                "binary_data_output": {
                    "type": "boolean",
                    "description": "every output not asked for by name as binary data",
                }
            },
        },
        "inputs": {"type": "array", "items": INPUT},
        "outputs": {
            "type": "array",
            "items": _REQUESTED_OUTPUT,
            "description": "the outputs to answer (all when absent)",
        },
    },
    # A model of 8 FP32 inputs, as the OpenAPI document's readers (and tests) may serve one.
    "example": {
        "id": "example",
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [1, 8],
                "data": [0.5, -0.25, 1.0, 0.0, 0.75, -1.0, 0.125, 2.0],
            }
        ],
    },
}
_OUTPUT = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        **_TENSOR,
        "data": {"type": "array", "description": "the values, flat, row-major"},
    },
}
INFER_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["model_name", "model_version", "id", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": _OUTPUT},
    },
}
_TENSOR_METADATA = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": _DATATYPE,
        "shape": {
            "type": "array",
            "items": {"type": "integer", "minimum": -1},
            "description": "-1 marks a dimension of any size (the batch)",
        },
    },
}
MODEL_METADATA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "versions", "platform", "inputs", "outputs"],
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": _TENSOR_METADATA},
        "outputs": {"type": "array", "items": _TENSOR_METADATA},
    },
}
