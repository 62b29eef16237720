"""Class labels: the 1000 ImageNet classes shipped with the package, and label files."""

from __future__ import annotations

import functools
import json
import os
from importlib import resources
from pathlib import Path

from nuvem.errors import ModelError

IMAGENET_CLASSES = "imagenet_classes.txt"


@functools.cache
def imagenet_labels(*, underscores: bool = False) -> tuple[str, ...]:
    """The 1000 ImageNet class names in the order of torchvision's and TorchServe's models
    (0 "tench" ... 999 "toilet tissue").

    With `underscores`, names are spelled as in TorchServe's `index_to_name.json`
    ("great_white_shark"), which is what its image classifier returns as labels.
    """
    text = resources.files("nuvem.models").joinpath(IMAGENET_CLASSES).read_text(encoding="utf-8")
    names = _lines(text)
    return tuple(name.replace(" ", "_") for name in names) if underscores else names


def read_labels(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Labels from a file: plain text with one name per line, in class order, or a TorchServe
    `index_to_name.json` mapping "0", "1", ... to a name or to a [wordnet id, name] pair."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"labels file not found: {path}", hint="check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read labels file {path}: {exc}") from exc
    if path.suffix.lower() == ".json":
        return _from_index_to_name(text, path)
    labels = _lines(text)
    if not labels:
        raise ModelError(f"labels file {path} is empty", hint="write one class name per line")
    return labels


def _lines(text: str) -> tuple[str, ...]:
    # Trailing blank lines are an editor's doing, not classes.
    return tuple(line.strip() for line in text.rstrip("\n").splitlines())


def _from_index_to_name(text: str, path: Path) -> tuple[str, ...]:
    hint = 'expected {"0": "name", ...} or {"0": ["n01440764", "name"], ...}'
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"labels file {path} is not valid JSON: {exc}", hint=hint) from exc
    if not isinstance(mapping, dict) or not mapping:
        raise ModelError(f"labels file {path} is not a JSON object of labels", hint=hint)
    labels: dict[int, str] = {}
    for key, value in mapping.items():
        name = value[-1] if isinstance(value, list) and value else value
        if not (isinstance(key, str) and key.isdigit() and isinstance(name, str)):
            raise ModelError(f"labels file {path}: bad entry {key!r}: {value!r}", hint=hint)
        labels[int(key)] = name
    if sorted(labels) != list(range(len(labels))):
        missing = sorted(set(range(max(labels) + 1)) - set(labels))[:5]
        raise ModelError(
            f"labels file {path} skips class indices (first missing: {missing})",
            hint="number the classes 0, 1, 2, ... without gaps",
        )
    return tuple(labels[i] for i in range(len(labels)))
