"""TorchServe's image-classifier pipeline: image bytes in, a normalised [3, 224, 224] tensor
for the model; logits out, the top-k classes with their probabilities."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from nuvem.errors import BadRequest, ModelError
from nuvem.models.labels import imagenet_labels

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
    """torchvision's Resize(resize) (shorter side, bilinear, antialiased), CenterCrop(crop),
    ToTensor() and Normalize(MEAN, STD), computed the same way, on an RGB image."""
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
    # np.array copies: torch.from_numpy warns on the read-only view np.asarray would give.
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    tensor = pixels.to(torch.float32).div(255)
    mean = torch.tensor(MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(3, 1, 1)
    return tensor.sub_(mean).div_(std)


def preprocess(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> torch.Tensor:
    """Image bytes to the float32 [3, 224, 224] input of an ImageNet classifier."""
    return transform(decode_image(data, max_pixels=max_pixels, formats=formats))


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
    logits: torch.Tensor, k: int = 5, labels: Sequence[str] | None = None
) -> list[list[Prediction]]:
    """`postprocess` for a batch of logits, shape [N, C]: one list of predictions per image."""
    if logits.dim() != 2:
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
    probabilities = torch.softmax(logits.detach().to(torch.float32), dim=1).cpu()
    top = torch.topk(probabilities, min(k, classes), dim=1)
    return [
        [
            Prediction(index, names[index], probability)
            for index, probability in zip(row_indices.tolist(), row_values.tolist(), strict=True)
        ]
        for row_indices, row_values in zip(top.indices, top.values, strict=True)
    ]
