"""The benchmark's function image: examples/functions.py's echo (answer with the body, as it
came, with its content type) over HTTP/1.1 with kept-alive connections, in the standard
library only (the image is a bare Debian with python3). One asyncio protocol, no threads:
what it costs per call is small next to the gateway's, so the benchmark weighs nuvem's path
to a container (pool, port publishing), not this server.
"""

from __future__ import annotations

import asyncio
import os


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            fields = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
            length = int(fields.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            kind = fields.get("content-type", "application/octet-stream")
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: "
                + kind.encode("latin-1")
                + b"\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "0.0.0.0", int(os.environ.get("PORT", "8080")))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
