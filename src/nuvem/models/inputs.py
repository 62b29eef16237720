"""What one request to a model asks for, read from its bytes inside the replica."""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nuvem.errors import BadRequest
from nuvem.handler import Request
from nuvem.models.engine import NUMPY_TYPES
from nuvem.models.preprocess import preprocess_array
from nuvem.runtime import tensors
from nuvem.stack.model import TensorSpec

IMAGE_INPUT = "image"  # built-ins also take encoded image files as a BYTES tensor of this name
TORCHSERVE_FIELDS = ("data", "body")  # the multipart fields TorchServe reads an input from


@dataclass(slots=True)
class Ask:
    """One request's work: the arrays to run and how to answer."""

    kind: str  # "image" (top-k as TorchServe answers) or "tensors" (the V2 protocol)
    feed: dict[str, np.ndarray]
    rows: int  # how many batch rows this request adds
    parameters: dict[str, Any] = field(default_factory=dict)


def image_bytes(request: Request) -> bytes:
    """The image of a TorchServe-style call: the raw body, or its multipart `data` field."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        return request.body
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    parts = {}
    if message.is_multipart():
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str):
                payload = part.get_payload(decode=True)
                parts[name] = payload if isinstance(payload, bytes) else b""
    for name in TORCHSERVE_FIELDS:
        if name in parts:
            return parts[name]
    raise BadRequest(
        f"the multipart body has no field named 'data' (fields: {', '.join(parts) or 'none'})",
        "send the image as the field `data` (curl -F data=@kitten.jpg) or as the raw body",
    )


def read_image(request: Request) -> Ask:
    pixels = preprocess_array(image_bytes(request))
    return Ask("image", {"input": pixels[np.newaxis]}, 1)


def read_tensors(request: Request, inputs: Sequence[TensorSpec], takes_images: bool) -> Ask:
    """An envelope from the gateway's /v2 endpoint, checked against the model's inputs."""
    try:
        given, parameters = tensors.decode(request.body)
    except tensors.TensorError as exc:
        raise BadRequest(str(exc)) from exc
    by_name = {t.name: t for t in given}
    feed: dict[str, np.ndarray] = {}
    if takes_images and IMAGE_INPUT in by_name:
        images = by_name.pop(IMAGE_INPUT)
        if images.datatype != "BYTES":
            raise BadRequest(
                f"input {IMAGE_INPUT!r} must be BYTES (encoded image files), not {images.datatype}"
            )
        data = tensors.split_bytes(images.data, name=IMAGE_INPUT)
        feed[inputs[0].name] = (
            np.stack([preprocess_array(d) for d in data])
            if data
            else (np.zeros((0, 3, 224, 224), np.float32))
        )
    names = [spec.name for spec in inputs]
    unknown = sorted(set(by_name) - set(names))
    if unknown:
        accepted = ", ".join(names + ([IMAGE_INPUT] if takes_images else []))
        raise BadRequest(f"unknown input {unknown[0]!r}; the model takes: {accepted}")
    for spec in inputs:
        if spec.name in feed:
            continue
        tensor = by_name.get(spec.name)
        if tensor is None:
            hint = f" (or {IMAGE_INPUT!r}, BYTES)" if takes_images else ""
            raise BadRequest(
                f"missing input {spec.name!r} ({spec.datatype} {list(spec.shape)}){hint}"
            )
        feed[spec.name] = _array(tensor, spec)
    rows = {int(array.shape[0]) if array.ndim else 1 for array in feed.values()}
    if len(rows) > 1:
        raise BadRequest(f"inputs disagree on the batch size: {sorted(rows)}")
    return Ask("tensors", feed, rows.pop() if rows else 0, parameters)


def _array(tensor: tensors.Tensor, spec: TensorSpec) -> np.ndarray:
    if tensor.datatype != spec.datatype:
        raise BadRequest(
            f"input {spec.name!r} is {spec.datatype}, the request sends {tensor.datatype}"
        )
    expected = spec.shape
    shape = tensor.shape
    if len(shape) != len(expected) or any(
        e != -1 and e != s for e, s in zip(expected, shape, strict=True)
    ):
        raise BadRequest(
            f"input {spec.name!r} has shape {list(shape)}; the model takes {list(expected)} "
            "(-1: any size)"
        )
    dtype = NUMPY_TYPES.get(tensor.datatype)
    if dtype is None:
        raise BadRequest(f"input {spec.name!r}: datatype {tensor.datatype} is not supported")
    # A copy: the envelope's bytes are read-only, and frameworks want to own their inputs.
    return (
        np.frombuffer(tensor.data, dtype=np.dtype(dtype).newbyteorder("<"))
        .reshape(shape)
        .astype(dtype, copy=True)
    )
