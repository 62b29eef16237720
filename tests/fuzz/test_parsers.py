"""Parsers of outside bytes, fuzzed: each answers a value or a 4xx, never a crash or a 5xx."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nuvem import Request
from nuvem.cluster.code_bundle import unpack
from nuvem.errors import NuvemError, PayloadTooLarge
from nuvem.gateway.content_coding import decompress
from nuvem.gateway.oip_codec import decode_request
from nuvem.handler import Headers
from nuvem.models.inputs import image_bytes
from nuvem.stack.loader import load_stack_text

LIMIT = 64 * 2**10

# "ci" is seeded and small, a few seconds per parser in every test run; `make fuzz` picks
# "fuzz", which explores far more inputs. Applied per test, so other Hypothesis tests keep
# their own settings.
settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
fuzzed = settings(settings.get_profile(os.environ.get("NUVEM_FUZZ_PROFILE", "ci")))


def refused_as_4xx(exc: NuvemError) -> None:
    assert 400 <= exc.status < 500, f"{type(exc).__name__} answers {exc.status}: {exc}"


def gzip_of(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1)


codings = st.sampled_from(["gzip", "deflate", "GZIP ", "identity", None, "br", ""])
bodies = st.one_of(
    st.binary(max_size=4096),
    st.binary(max_size=4096).map(gzip_of),
    st.binary(max_size=4096).map(zlib.compress),
    st.binary(max_size=4096).map(gzip_of).map(lambda b: b[: len(b) // 2]),  # cut short
)


@fuzzed
@given(bodies, codings)
def test_decompress_answers_within_the_limit_or_4xx(body: bytes, coding: str | None) -> None:
    try:
        data = decompress(body, coding, LIMIT)
    except NuvemError as exc:
        refused_as_4xx(exc)
        return
    if coding and coding.strip().lower() in ("gzip", "deflate"):
        assert len(data) <= LIMIT


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_decompression_bomb_is_413_without_inflating_it(coding: str) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31 if coding == "gzip" else 15)
    chunk = bytes(2**20)
    bomb = b"".join(packer.compress(chunk) for _ in range(256)) + packer.flush()  # 256 MiB
    assert len(bomb) < 2**20
    with pytest.raises(PayloadTooLarge) as caught:
        decompress(bomb, coding, LIMIT)
    assert caught.value.status == 413


json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8)
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)
datatypes = st.sampled_from(
    ["BOOL", "UINT8", "INT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES", "COMPLEX", 7]
)
tensors = st.fixed_dictionaries(
    {"name": st.text(max_size=4), "datatype": datatypes},
    optional={
        "shape": st.lists(st.integers(-2, 2**40), max_size=4) | json_values,
        "data": json_values,
        "parameters": st.fixed_dictionaries({"binary_data_size": st.integers(-4, 64) | json_values})
        | json_values,
    },
)
envelopes = st.fixed_dictionaries(
    {"inputs": st.lists(tensors, max_size=3) | json_values},
    optional={
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.text(max_size=4)}, optional={"parameters": json_values}
            )
        )
        | json_values,
        "parameters": json_values,
        "id": json_values,
    },
)


@fuzzed
@given(envelopes, st.binary(max_size=256), st.booleans(), st.text(max_size=6))
def test_v2_envelope_decodes_or_answers_4xx(
    header: dict[str, Any], binary: bytes, give_length: bool, odd_length: str
) -> None:
    head = json.dumps(header).encode()
    length = str(len(head)) if give_length else (odd_length or None)
    try:
        decode_request(head + binary, length)
    except NuvemError as exc:
        refused_as_4xx(exc)


@fuzzed
@given(st.binary(max_size=2048), st.one_of(st.none(), st.text(max_size=12)))
def test_v2_raw_bytes_decode_or_answer_4xx(body: bytes, length: str | None) -> None:
    try:
        decode_request(body, length)
    except NuvemError as exc:
        refused_as_4xx(exc)


parts = st.lists(
    st.tuples(
        st.sampled_from(["data", "body", "other", ""]),
        st.binary(max_size=64),
        st.sampled_from(["", "Content-Transfer-Encoding: base64\r\n", "X: \xff\r\n"]),
    ),
    max_size=3,
)


@fuzzed
@given(parts, st.sampled_from(["b0undary", '"quoted b"', ""]), st.binary(max_size=64))
def test_multipart_body_gives_its_field_or_4xx(
    fields: list[tuple[str, bytes, str]], boundary: str, junk: bytes
) -> None:
    plain = boundary.strip('"')
    body = b"".join(
        f'--{plain}\r\nContent-Disposition: form-data; name="{name}"\r\n{extra}\r\n'.encode(
            "latin-1"
        )
        + value
        + b"\r\n"
        for name, value, extra in fields
    )
    body += f"--{plain}--\r\n".encode() + junk
    content_type = f"multipart/form-data; boundary={boundary}"
    request = Request(body, headers=Headers([("content-type", content_type)]))
    try:
        image = image_bytes(request)
    except NuvemError as exc:
        refused_as_4xx(exc)
        return
    assert isinstance(image, bytes)


yaml_text = st.one_of(
    st.text(max_size=300),
    st.builds(
        lambda value: f"functions:\n  f:\n    handler: handlers:echo\n    {value}\n",
        st.text(max_size=60),
    ),
    json_values.map(lambda v: json.dumps({"functions": {"f": v}})),
)


@fuzzed
@given(yaml_text)
def test_stack_yaml_loads_or_answers_a_spec_error(text: str) -> None:
    try:
        load_stack_text(text, "nuvem.yaml", Path("/nonexistent-root"))
    except NuvemError as exc:
        refused_as_4xx(exc)


def test_a_yaml_alias_bomb_is_refused_quickly() -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for n in range(1, 12):
        lines.append(f"{'a' * (n + 1)}: &{'a' * (n + 1)} [" + ",".join([f"*{'a' * n}"] * 9) + "]")
    lines.append("functions: {f: {handler: 'h:h', labels: *" + "a" * 12 + "}}")
    with pytest.raises(NuvemError) as caught:
        load_stack_text("\n".join(lines), "bomb.yaml", Path("/nonexistent-root"))
    refused_as_4xx(caught.value)


def zip_of(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


archives = st.one_of(
    st.binary(max_size=1024),
    st.lists(
        st.tuples(
            st.sampled_from(["a.py", "d/b.txt", "../up", "/abs", "c\\d", "d/", "ok/x.py"]),
            st.binary(max_size=64),
        ),
        max_size=4,
        unique_by=lambda entry: entry[0],
    ).map(zip_of),
    st.lists(st.tuples(st.just("f.py"), st.binary(max_size=64)), min_size=1, max_size=1)
    .map(zip_of)
    .flatmap(lambda z: st.integers(0, len(z)).map(lambda i: z[:i] + b"\x00" + z[i + 1 :])),
)


@fuzzed
@given(archives)
def test_bundle_unpacks_inside_its_folder_or_answers_4xx(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        digest = hashlib.sha256(data).hexdigest()
        try:
            folder = unpack(data, digest, cache)
        except NuvemError as exc:
            refused_as_4xx(exc)
            return
        for path in folder.rglob("*"):
            assert path.resolve().is_relative_to(folder.resolve())


def test_a_zip_bomb_bundle_is_refused_before_inflating(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    chunk = bytes(2**20)
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("zeros.bin", "w", force_zip64=True) as entry,
    ):
        for _ in range(300):  # 300 MiB of zeros, over the 256 MiB bundle limit
            entry.write(chunk)
    data = buffer.getvalue()
    assert len(data) < 2 * 2**20
    with pytest.raises(NuvemError, match="inflates to more than 256 MiB") as caught:
        unpack(data, hashlib.sha256(data).hexdigest(), tmp_path / "cache")
    refused_as_4xx(caught.value)
    assert not list((tmp_path / "cache").iterdir())
