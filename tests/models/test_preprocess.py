"""The TorchServe image-classifier pipeline: decoding, transforms, refusals, top-k."""

from __future__ import annotations

import io
import struct
import zlib

import pytest

torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from nuvem.errors import BadRequest, ModelError  # noqa: E402
from nuvem.models import architectures  # noqa: E402
from nuvem.models.preprocess import (  # noqa: E402
    Prediction,
    decode_image,
    postprocess,
    postprocess_batch,
    preprocess,
)

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def picture(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    # Smooth gradients plus noise, so that resizing and cropping errors show up as differences.
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    channels = [x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256]
    rgb = np.stack(channels, axis=-1).astype(np.int64) + rng.integers(-20, 20, (height, width, 3))
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    return image if mode == "RGB" else image.convert(mode)


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def reference(image: Image.Image, size: tuple[int, int], box: tuple[int, int]) -> np.ndarray:
    # torchvision's Resize(256) on a PIL image is PIL's bilinear resize to `size`, CenterCrop(224)
    # a crop at `box`; ToTensor and Normalize are then plain arithmetic.
    left, top = box
    resized = image.resize(size, Image.Resampling.BILINEAR)
    pixels = np.array(resized.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
    return ((pixels - MEAN) / STD).transpose(2, 0, 1)


@pytest.mark.parametrize(
    ("width", "height", "size", "box"),
    [
        # 256 * 320 / 240 = 341.3 truncates to 341; (341 - 224) / 2 = 58.5 rounds to even, 58.
        (320, 240, (341, 256), (58, 16)),
        # Portrait: 256 * 301 / 200 = 385.28 -> 385; top offset 80.5 -> 80.
        (200, 301, (256, 385), (16, 80)),
        # Smaller than the crop: upscaled first.
        (100, 80, (320, 256), (48, 16)),
        # Already 256 on the short side: no resize at all.
        (256, 300, (256, 300), (16, 38)),
    ],
)
def test_matches_reference(
    width: int, height: int, size: tuple[int, int], box: tuple[int, int]
) -> None:
    image = picture(width, height)
    tensor = preprocess(encode(image))
    assert tensor.shape == (3, 224, 224)
    assert tensor.dtype == torch.float32
    np.testing.assert_allclose(tensor.numpy(), reference(image, size, box), rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_other_modes_become_rgb(mode: str) -> None:
    image = picture(64, 48, mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = decode_image(encode(image, fmt))
    assert decoded.mode == "RGB"
    assert decoded.size == (64, 48)


def test_palette_with_transparency_gives_no_warning() -> None:
    image = picture(40, 30, "P")
    image.info["transparency"] = 0
    # Warnings are errors in this test suite, so a warning from Pillow would fail here.
    assert decode_image(encode(image, "PNG")).mode == "RGB"
    assert decode_image(encode(image, "GIF")).mode == "RGB"


def test_jpeg() -> None:
    assert preprocess(encode(picture(300, 200), "JPEG")).shape == (3, 224, 224)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header(width: int, height: int) -> bytes:
    # A PNG that claims these dimensions but holds a few bytes of pixels: Pillow opens it from the
    # header alone, and only decoding would find it short.
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(64))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty image"),
        (b"hello, world", "not an image"),
        (b'{"instances": [[1, 2, 3]]}', "not an image"),
        (encode(picture(20, 20), "TIFF"), r"not one of the accepted formats \(JPEG, PNG"),
        (encode(picture(300, 200), "JPEG")[:2000], "truncated"),
        (encode(picture(300, 200), "PNG")[:5000], "truncated"),
        # 8000 x 8000 = 64 megapixels: over our 50, under Pillow's own thresholds.
        (png_header(8000, 8000), "image too large: 8000x8000 is 64.0 megapixels"),
        # 100 megapixels: in Pillow's warning band; must be our error, not its warning.
        (png_header(10_000, 10_000), "image too large: 10000x10000"),
        # 900 megapixels: Pillow refuses it outright.
        (png_header(30_000, 30_000), "image too large"),
    ],
)
def test_bad_images(data: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        preprocess(data)


def test_pixel_limit_is_a_parameter() -> None:
    with pytest.raises(BadRequest, match=r"more than the 0\.001 allowed"):
        decode_image(encode(picture(40, 30)), max_pixels=1000)
    assert decode_image(encode(picture(40, 30)), max_pixels=1200).size == (40, 30)


def test_raised_limit_gives_no_decompression_bomb_warning() -> None:
    # Allowed by our limit but over Pillow's warning threshold: no warning escapes; the header-only
    # file then fails as truncated.
    with pytest.raises(BadRequest, match="truncated"):
        decode_image(png_header(10_000, 10_000), max_pixels=200_000_000)


def test_postprocess_top_k() -> None:
    logits = torch.zeros(1000)
    logits[207] = 10.0
    logits[281] = 8.0
    logits[954] = 6.0
    top = postprocess(logits, k=3)
    assert [(p.index, p.label) for p in top] == [
        (207, "golden retriever"),
        (281, "tabby"),
        (954, "banana"),
    ]
    expected = torch.softmax(logits, 0)[[207, 281, 954]].tolist()
    assert [p.probability for p in top] == pytest.approx(expected)
    assert postprocess(logits.unsqueeze(0), k=3) == top


def test_postprocess_labels_and_k() -> None:
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
    rows = postprocess_batch(logits, k=10, labels=["a", "b", "c"])
    assert [[p.label for p in row] for row in rows] == [["b", "c", "a"], ["a", "b", "c"]]
    assert sum(p.probability for p in rows[0]) == pytest.approx(1.0)
    assert isinstance(rows[0][0], Prediction)
    with pytest.raises(BadRequest, match="at least 1"):
        postprocess_batch(logits, k=0, labels=["a", "b", "c"])
    with pytest.raises(ModelError, match="outputs 3 classes but there are 2 labels"):
        postprocess_batch(logits, labels=["a", "b"])
    with pytest.raises(ModelError, match="use postprocess_batch"):
        postprocess(logits, labels=["a", "b", "c"])


def test_end_to_end_with_resnet18() -> None:
    torch.manual_seed(0)
    model = architectures.build("resnet18").eval()
    batch = preprocess(encode(picture(320, 240))).unsqueeze(0)
    with torch.inference_mode():
        predictions = postprocess(model(batch), k=5)
    assert len(predictions) == 5
    assert all(0.0 <= p.probability <= 1.0 for p in predictions)
    assert [p.probability for p in predictions] == sorted(
        (p.probability for p in predictions), reverse=True
    )
