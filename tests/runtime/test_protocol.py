"""Frames cut correctly from a byte stream, whatever the chunking."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nuvem.runtime import protocol
from nuvem.runtime.loader import split_reference
from nuvem.runtime.protocol import CallMeta, Frame, Kind


def test_split_reference() -> None:
    assert split_reference("pkg.mod:fn") == ("pkg.mod", "fn")
    assert split_reference("handlers/echo.py") == ("handlers/echo.py", "handle")
    assert split_reference("handlers/echo.py:run") == ("handlers/echo.py", "run")
    assert split_reference("mod") == ("mod", "handle")


@given(
    bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=50),
)
def test_frames_survive_any_chunking(bodies: list[bytes], cuts: list[int]) -> None:
    meta = CallMeta("POST", "/p", "q=1", [("h", "v")])
    stream = b"".join(
        protocol.encode(Kind.CALL, i + 1, meta.dump(), body) for i, body in enumerate(bodies)
    )
    seen: list[Frame] = []
    receiver = protocol.FrameProtocol(seen.append, lambda exc: None)
    offset = 0
    for cut in cuts * (len(stream) // max(sum(cuts), 1) + 1):
        if offset >= len(stream):
            break
        receiver.data_received(stream[offset : offset + cut])
        offset += cut
    if offset < len(stream):
        receiver.data_received(stream[offset:])
    assert [f.body for f in seen] == bodies
    assert [f.call_id for f in seen] == list(range(1, len(bodies) + 1))
    assert all(CallMeta.load(f.meta) == meta for f in seen)
