"""Coverage-guided fuzzing (atheris, libFuzzer) of the parsers of outside bytes, beside the
Hypothesis tests in test_parsers.py: libFuzzer's mutations follow the branches the parsers
take, which finds deep inputs (a binary tensor envelope whose lengths almost agree) sooner.

    python tests/fuzz/atheris_targets.py TARGET [libFuzzer flags, e.g. -max_total_time=300]

Each target must answer a value or a 4xx NuvemError; any other exception is a crash, which
libFuzzer reports with the input that caused it. test_atheris.py runs each target briefly;
`make fuzz` runs them for longer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import atheris

# Only nuvem's own modules: instrumenting what they import (torch) would take minutes.
with atheris.instrument_imports(include=["nuvem"]):
    from nuvem.errors import NuvemError
    from nuvem.gateway.content_coding import decompress
    from nuvem.gateway.oip_codec import decode_request
    from nuvem.handler import Headers, Request
    from nuvem.models.inputs import image_bytes
    from nuvem.stack.loader import load_stack_text

LIMIT = 64 * 2**10
ROOT = Path("/nonexistent-root")


def _refused(exc: NuvemError) -> None:
    if not 400 <= exc.status < 500:
        raise AssertionError(f"{type(exc).__name__} answers {exc.status}: {exc}") from exc


def oip(data: bytes) -> None:
    fuzzed = atheris.FuzzedDataProvider(data)
    length = fuzzed.ConsumeIntInRange(-1, 512)
    body = fuzzed.ConsumeBytes(fuzzed.remaining_bytes())
    decode_request(body, None if length < 0 else str(length))


def gzip_body(data: bytes) -> None:
    fuzzed = atheris.FuzzedDataProvider(data)
    coding = ("gzip", "deflate", "identity")[fuzzed.ConsumeIntInRange(0, 2)]
    inflated = decompress(fuzzed.ConsumeBytes(fuzzed.remaining_bytes()), coding, LIMIT)
    if coding != "identity" and len(inflated) > LIMIT:
        raise AssertionError(f"inflated {len(inflated)} bytes past the limit of {LIMIT}")


def multipart(data: bytes) -> None:
    fuzzed = atheris.FuzzedDataProvider(data)
    # Header values reach handlers decoded as latin-1 (gateway/asgi.py): any byte, no more.
    boundary = fuzzed.ConsumeBytes(20).decode("latin-1")
    headers = Headers([("content-type", f"multipart/form-data; boundary={boundary}")])
    image_bytes(Request(body=fuzzed.ConsumeBytes(fuzzed.remaining_bytes()), headers=headers))


def stack_yaml(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(len(data))
    load_stack_text(text, "nuvem.yaml", ROOT)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "oip": oip,
    "gzip": gzip_body,
    "multipart": multipart,
    "stack": stack_yaml,
}


def main() -> None:
    target = TARGETS[sys.argv[1]]

    def one(data: bytes) -> None:
        try:
            target(data)
        except NuvemError as exc:
            _refused(exc)

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
