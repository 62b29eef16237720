"""Content codings of the model protocols' bodies: gzip or deflate requests inflated within
the body limit, answers compressed as the client accepts."""

from __future__ import annotations

import gzip
import zlib

from nuvem.errors import BadRequest, PayloadTooLarge
from nuvem.gateway.asgi import MAX_BODY


def decompress(body: bytes, encoding: str | None, limit: int = MAX_BODY) -> bytes:
    """A gzip or deflate body (Content-Encoding), inflated to at most `limit` bytes."""
    if not encoding or encoding.strip().lower() == "identity":
        return body
    kind = encoding.strip().lower()
    if kind not in ("gzip", "deflate"):
        raise BadRequest(
            f"unsupported Content-Encoding {encoding!r}", "send gzip, deflate or no encoding"
        )
    # gzip: wbits 16+15; deflate is zlib-wrapped in HTTP, though some clients send it raw.
    attempts = (31,) if kind == "gzip" else (15, -15)
    for wbits in attempts:
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(data) > limit:
            raise PayloadTooLarge(
                f"the {kind} body inflates to more than {limit} bytes",
                "send fewer or smaller inputs per request, or raise the function's max_body "
                "or the gateway's NUVEM_MAX_BODY",
            )
        return data
    raise BadRequest(f"the body is not valid {kind} data", "compress it again, or send it plain")


def compress(body: bytes, accept_encoding: str | None) -> tuple[bytes, str | None]:
    """The body compressed as the client accepts (gzip preferred), and the encoding used."""
    if not accept_encoding or len(body) < 256:
        return body, None
    accepted = {part.split(";")[0].strip().lower() for part in accept_encoding.split(",")}
    if "gzip" in accepted:
        return gzip.compress(body, compresslevel=1), "gzip"
    if "deflate" in accepted:
        return zlib.compress(body, 1), "deflate"
    return body, None
