"""TorchServe's image-classifier pipeline: image bytes in, a normalised [3, 224, 224] tensor
for the model; logits out, the top-k classes with their probabilities.

Computed in numpy, so that a replica serving an ONNX model never imports torch (~2.7 s of
CPU here); the torch-tensor functions (`transform`, `preprocess`, `postprocess`) wrap them
for callers that hold tensors."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from nuvem.errors import BadRequest, ModelError
from nuvem.models.labels import imagenet_labels

if TYPE_CHECKING:
    import torch

# Pillow's own guard is a warning at 89 megapixels and an error at 179; ours is lower and
# checked before any pixel is decoded. A 50-megapixel RGB image decodes to 150 MB.
DEFAULT_MAX_PIXELS = 50_000_000
# Formats whose decoders see heavy real-world use; every other Pillow plugin is refused to keep
# the attack surface small.
DEFAULT_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
RESIZE = 256
CROP = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError)

# Pillow imports its common decoders on the first Image.open: done here instead, so a
# pre-started worker has them before its first call (~30 ms of that call otherwise).
Image.preinit()


@dataclass(frozen=True, slots=True)
class Prediction:
    index: int
    label: str
    probability: float


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> Image.Image:
    """Decode image bytes into an RGB image, refusing what is not an image of an allowed format,
    is truncated or corrupt, or has more than `max_pixels` pixels (read from the header, before
    decoding)."""
    if not data:
        raise BadRequest("empty image", hint="send the image file's bytes as the request body")
    # Our own limit replaces Pillow's DecompressionBombWarning, which would otherwise fire for
    # images between its threshold and a larger `max_pixels`. catch_warnings is process-global:
    # a concurrent thread may see this filter briefly, which only silences that same warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=list(formats))
        except Image.DecompressionBombError as exc:
            raise BadRequest(
                f"image too large: {exc}", hint="downscale the image before sending it"
            ) from exc
        except UnidentifiedImageError:
            raise BadRequest(
                f"not an image, or not one of the accepted formats ({', '.join(formats)})",
                hint="send the raw bytes of a JPEG or PNG file",
            ) from None
        except _DECODE_ERRORS as exc:
            raise BadRequest(f"corrupt or truncated image: {exc}") from exc
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise BadRequest(
                    f"image too large: {width}x{height} is {width * height / 1e6:.1f} megapixels,"
                    f" more than the {max_pixels / 1e6:g} allowed",
                    hint="downscale the image before sending it",
                )
            try:
                image.load()
                return _to_rgb(image)
            except _DECODE_ERRORS as exc:
                raise BadRequest(
                    f"corrupt or truncated {image.format} image: {exc}",
                    hint="send the complete file",
                ) from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image.copy()
    # Palette images with transparency make Pillow warn when converted straight to RGB; going
    # through RGBA gives the same pixels without the warning.
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def transform(image: Image.Image, *, resize: int = RESIZE, crop: int = CROP) -> torch.Tensor:
    """`transform_array` as a torch tensor."""
    import torch

    return torch.from_numpy(transform_array(image, resize=resize, crop=crop))


def transform_array(image: Image.Image, *, resize: int = RESIZE, crop: int = CROP) -> np.ndarray:
    """torchvision's Resize(resize) (shorter side, bilinear, antialiased), CenterCrop(crop),
    ToTensor() and Normalize(MEAN, STD), computed the same way, on an RGB image: float32,
    [3, crop, crop]."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {image.mode}")
    if crop > resize:
        raise ValueError(f"crop ({crop}) must not exceed resize ({resize})")
    width, height = image.size
    # torchvision truncates the longer side, and skips resizing an image already the right size.
    if width <= height:
        size = (resize, int(resize * height / width))
    else:
        size = (int(resize * width / height), resize)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    # torchvision rounds the offsets with Python's round(): half to even.
    left = round((size[0] - crop) / 2.0)
    top = round((size[1] - crop) / 2.0)
    image = image.crop((left, top, left + crop, top + crop))
    pixels = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
    # The same float32 operations in the same order as ToTensor and Normalize: each is
    # correctly rounded, so the values are torchvision's to the bit.
    tensor = pixels.astype(np.float32) / np.float32(255)
    mean = np.asarray(MEAN, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(STD, dtype=np.float32).reshape(3, 1, 1)
    return np.ascontiguousarray((tensor - mean) / std)


def preprocess(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> torch.Tensor:
    """Image bytes to the float32 [3, 224, 224] input of an ImageNet classifier."""
    import torch

    return torch.from_numpy(preprocess_array(data, max_pixels=max_pixels, formats=formats))


def preprocess_array(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> np.ndarray:
    """`preprocess` as a numpy array."""
    return transform_array(decode_image(data, max_pixels=max_pixels, formats=formats))


def postprocess(
    logits: torch.Tensor, k: int = 5, labels: Sequence[str] | None = None
) -> list[Prediction]:
    """The `k` most probable classes of one image's logits ([C] or [1, C]), most probable
    first. `labels` defaults to the ImageNet classes."""
    if logits.dim() == 2 and logits.shape[0] == 1:
        logits = logits[0]
    if logits.dim() != 1:
        raise ModelError(
            f"expected one image's logits, shape [C] or [1, C], got {list(logits.shape)}",
            hint="use postprocess_batch for a batch",
        )
    return postprocess_batch(logits.unsqueeze(0), k, labels)[0]


def postprocess_batch(
    logits: torch.Tensor | np.ndarray, k: int = 5, labels: Sequence[str] | None = None
) -> list[list[Prediction]]:
    """`postprocess` for a batch of logits, shape [N, C] (a tensor or an array): one list of
    predictions per image."""
    if not isinstance(logits, np.ndarray):  # a tensor; torch is loaded if one exists
        logits = logits.detach().float().cpu().numpy()
    if logits.ndim != 2:
        raise ModelError(f"expected batch logits of shape [N, C], got {list(logits.shape)}")
    if k < 1:
        raise BadRequest(f"top-k must be at least 1, got {k}")
    names = imagenet_labels() if labels is None else labels
    classes = logits.shape[1]
    if len(names) != classes:
        raise ModelError(
            f"the model outputs {classes} classes but there are {len(names)} labels",
            hint="give a labels file with one name per class",
        )
    scores = logits.astype(np.float32, copy=False)
    exponents = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities = exponents / exponents.sum(axis=1, keepdims=True)
    # Ties keep the lower index first, as torch.topk does on the CPU.
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, : min(k, classes)]
    return [
        [Prediction(index, names[index], float(row[index])) for index in row_order.tolist()]
        for row, row_order in zip(probabilities, order, strict=True)
    ]
