"""The shipped ImageNet labels and label files. Needs no torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nuvem.errors import ModelError
from nuvem.models.labels import imagenet_labels, read_labels


def test_imagenet_labels() -> None:
    labels = imagenet_labels()
    assert len(labels) == 1000
    assert all(label and label == label.strip() for label in labels)
    # ImageNet names two classes twice: crane (bird, machine) and maillot.
    assert len(set(labels)) == 998
    assert labels[134] == labels[517] == "crane"
    assert labels[638] == labels[639] == "maillot"
    known = {
        0: "tench",
        1: "goldfish",
        2: "great white shark",
        151: "Chihuahua",
        207: "golden retriever",
        281: "tabby",
        282: "tiger cat",
        285: "Egyptian cat",
        340: "zebra",
        409: "analog clock",
        430: "basketball",
        508: "computer keyboard",
        954: "banana",
        999: "toilet tissue",
    }
    assert {index: labels[index] for index in known} == known


def test_torchserve_spelling() -> None:
    labels = imagenet_labels(underscores=True)
    assert labels[2] == "great_white_shark"
    assert labels[986] == "yellow_lady's_slipper"
    assert [label.replace("_", " ") for label in labels] == list(imagenet_labels())


def test_text_file(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("cat\ndog\n\n", encoding="utf-8")
    assert read_labels(tmp_path / "labels.txt") == ("cat", "dog")


def test_index_to_name_json(tmp_path: Path) -> None:
    path = tmp_path / "index_to_name.json"
    path.write_text(json.dumps({"1": ["n01443537", "goldfish"], "0": ["n01440764", "tench"]}))
    assert read_labels(path) == ("tench", "goldfish")
    path.write_text(json.dumps({"0": "cat", "1": "dog"}))
    assert read_labels(path) == ("cat", "dog")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["cat"]', "not a JSON object"),
        ('{"0": "cat", "2": "dog"}', r"skips class indices \(first missing: \[1\]\)"),
        ('{"zero": "cat"}', "bad entry 'zero'"),
    ],
)
def test_bad_json(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(ModelError, match=message):
        read_labels(path)


def test_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="labels file not found"):
        read_labels(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ModelError, match="is empty"):
        read_labels(tmp_path / "empty.txt")
