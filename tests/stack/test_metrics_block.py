"""The `metrics:` block of a stack file, and the NUVEM_INFLUXDB_* settings over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from nuvem.config import Settings
from nuvem.errors import SpecError
from nuvem.metrics.influx_sink import HttpSink, write_url
from nuvem.stack.loader import load_stack_text
from nuvem.stack.metrics import InfluxSpec, influx_target
from nuvem.stack.stack import Stack


def load(text: str, root: Path) -> Stack:
    return load_stack_text(text, "nuvem.yaml", root)


def influx(text: str, root: Path) -> InfluxSpec:
    spec = load(f"metrics:\n  influxdb:\n{text}", root).metrics.influxdb
    assert spec is not None
    return spec


def test_a_1x_database_with_defaults(tmp_path: Path) -> None:
    spec = influx("    url: http://127.0.0.1:8086\n    database: nuvem\n", tmp_path)
    assert (spec.interval, spec.buffer, spec.batch, spec.precision) == (10.0, 100_000, 5000, "ms")
    assert write_url(spec) == "http://127.0.0.1:8086/write?db=nuvem&precision=ms"


def test_a_2x_bucket_with_a_token_file_next_to_the_stack(tmp_path: Path) -> None:
    (tmp_path / "influx.token").write_text("s3cret\n")
    spec = influx(
        "    url: https://influx.lab/\n    bucket: b 1\n    org: lab\n"
        "    token_file: influx.token\n    interval: 30s\n    precision: s\n",
        tmp_path,
    )
    assert spec.token_file == str(tmp_path / "influx.token")
    assert write_url(spec) == "https://influx.lab/api/v2/write?org=lab&bucket=b+1&precision=s"
    sink = HttpSink.open(spec)
    assert sink._client.headers["authorization"] == "Token s3cret"


def test_no_metrics_block_means_no_export(tmp_path: Path) -> None:
    assert influx_target(Settings(), load("functions: {}\n", tmp_path).metrics) is None


@pytest.mark.parametrize(
    ("body", "line", "problem"),
    [
        ("    url: http://x:8086\n", 2, "exactly one of database"),
        ("    url: http://x:8086\n    database: d\n    bucket: b\n", 2, "not both"),
        ("    url: http://x:8086\n    bucket: b\n", 2, "needs org"),
        ("    url: http://x:8086\n    database: d\n    org: o\n", 2, "org applies to a 2.x"),
        ("    url: x:8086\n    database: d\n", 3, "not an http"),
        ("    url: http://x:8086/?db=d\n    database: d\n", 3, "has a query"),
        ("    url: http://x:8086\n    databse: d\n", 4, "did you mean 'database'"),
        ("    url: http://x\n    database: d\n    interval: soon\n", 5, "not a duration"),
        ("    url: http://x\n    database: d\n    interval: 100ms\n    precision: s\n", 2, "ms"),
        ("    url: http://x\n    database: d\n    buffer: 0\n", 5, "buffer"),
        ("    url: http://x\n    database: d\n    precision: m\n", 5, "precision"),
        ("    url: http://x\n    database: d\n    token: t\n    token_file: f\n", 2, "one of"),
        ("    url: http://x\n    database: d\n    token_file: gone\n", 5, "no readable file"),
    ],
)
def test_bad_settings_name_the_line_and_the_fix(
    tmp_path: Path, body: str, line: int, problem: str
) -> None:
    with pytest.raises(SpecError, match=problem) as caught:
        influx(body, tmp_path)
    assert str(caught.value).startswith(f"nuvem.yaml:{line}: metrics.influxdb")


def test_the_environment_alone_turns_the_export_on() -> None:
    settings = Settings.from_env(
        {
            "NUVEM_INFLUXDB_URL": "http://127.0.0.1:8086",
            "NUVEM_INFLUXDB_DATABASE": "bench",
            "NUVEM_INFLUXDB_INTERVAL": "1s",
        }
    )
    spec = influx_target(settings, None)
    assert spec is not None
    assert (spec.url, spec.database, spec.interval) == ("http://127.0.0.1:8086", "bench", 1.0)


def test_the_environment_overrides_the_stack(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("from-file")
    stack = load(
        "metrics:\n  influxdb: {url: 'http://a:8086', database: d, token_file: t, buffer: 7}\n",
        tmp_path,
    )
    settings = Settings.from_env(
        {"NUVEM_INFLUXDB_BUCKET": "b", "NUVEM_INFLUXDB_ORG": "o", "NUVEM_INFLUXDB_TOKEN": "env"}
    )
    spec = influx_target(settings, stack.metrics)
    assert spec is not None
    assert (spec.database, spec.bucket, spec.org, spec.token, spec.token_file, spec.buffer) == (
        "",
        "b",
        "o",
        "env",
        "",
        7,
    )
    assert "env" not in repr(spec)


def test_a_bad_environment_says_which_variables_to_set() -> None:
    settings = Settings.from_env({"NUVEM_INFLUXDB_URL": "http://127.0.0.1:8086"})
    with pytest.raises(SpecError, match="exactly one of database") as caught:
        influx_target(settings, None)
    assert "NUVEM_INFLUXDB_DATABASE" in (caught.value.hint or "")
