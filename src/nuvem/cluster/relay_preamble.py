"""The preamble a connection to a node's container relay must open with, and its check.

On a cluster node an image function's container is published on the node's loopback only;
the node's `ContainerActor` relays to it from the node's address (cluster/container_relay.py)
for connections that first send one line:

    NUVEM-RELAY-1 REPLICA MILLIS NONCE MAC\\n

REPLICA names the replica, MILLIS is the sender's clock (unix milliseconds), NONCE 16
random bytes in hex, and MAC the HMAC-SHA256 of everything before it under the replica's
secret (32 random bytes the gateway made for this replica and gave its actor over Ray's
token-authenticated channel, as for the framed protocol's link).

The gateway sends it without waiting for anything: a new connection costs no round trip
more than a direct one. What an attacker on the network could do with a preamble it saw:
send it again on a connection of its own. So a preamble is admitted once (its nonce is
remembered) and only within `WINDOW` of the node's clock (nonces older than that need not
be remembered). What this does not stop: someone on the path who rewrites the gateway's
own connection after its preamble, as for any plain-text TCP (Ray's included without TLS).

Pure functions here (but `signer`); the relay owns the node's clock and the sockets.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAGIC = "NUVEM-RELAY-1"
MAX_PREAMBLE = 256  # bytes, the newline included: a replica id is short
WINDOW_MS = 60_000  # how far the sender's clock may be from the node's, either way
REMEMBERED = 65_536  # admitted nonces kept at most (only admitted ones: each needed the secret)
_NONCE_HEX = 32
_MAC_HEX = 64


@dataclass(frozen=True, slots=True)
class Admitted:
    nonce: str
    millis: int


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a connection is not relayed, said to the sender and in the node's log."""

    reason: str


def _mac(secret: bytes, signed: str) -> str:
    return hmac.new(secret, signed.encode("ascii"), hashlib.sha256).hexdigest()


def make_preamble(secret: bytes, replica: str, millis: int, nonce: bytes) -> bytes:
    """The line a connection to `replica`'s relay starts with."""
    signed = f"{MAGIC} {replica} {millis} {nonce.hex()}"
    return f"{signed} {_mac(secret, signed)}\n".encode("ascii")


def signer(secret: bytes, replica: str) -> Callable[[], bytes]:
    """A fresh preamble for each new connection, on this machine's clock."""
    return lambda: make_preamble(secret, replica, int(time.time() * 1000), os.urandom(16))


def check_preamble(
    line: bytes, secret: bytes, replica: str, now_ms: int, window_ms: int = WINDOW_MS
) -> Admitted | Refused:
    """Whether `line` (up to and without its newline) is a fresh, signed preamble for
    `replica`; replays are the caller's to catch (`Nonces`)."""
    try:
        text = line.decode("ascii").rstrip("\r")
    except UnicodeDecodeError:
        return Refused("the connection did not start with the relay's preamble")
    parts = text.split(" ")
    if len(parts) != 5 or parts[0] != MAGIC:
        return Refused("the connection did not start with the relay's preamble")
    _, named, millis_text, nonce, mac = parts
    if len(nonce) != _NONCE_HEX or len(mac) != _MAC_HEX or not millis_text.isdigit():
        return Refused("the relay's preamble is malformed")
    if not hmac.compare_digest(mac, _mac(secret, text.rsplit(" ", 1)[0])):
        return Refused("the relay's preamble is not signed with this replica's secret")
    if named != replica:  # signed for another replica under the same secret: never ours
        return Refused(f"the preamble names replica {named!r}, not {replica!r}")
    millis = int(millis_text)
    if abs(now_ms - millis) > window_ms:
        return Refused(
            f"the preamble's time is {abs(now_ms - millis) / 1000:.0f}s away from this node's "
            f"clock (at most {window_ms / 1000:.0f}s): keep the clocks in sync (NTP)"
        )
    return Admitted(nonce, millis)


class Nonces:
    """The nonces admitted within the window: a second use of one is a replay."""

    def __init__(self, window_ms: int = WINDOW_MS, limit: int = REMEMBERED) -> None:
        self.window_ms = window_ms
        self.limit = limit
        self._seen: OrderedDict[str, int] = OrderedDict()  # nonce -> node's ms when admitted

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, admitted: Admitted, now_ms: int) -> Refused | None:
        """None when `admitted` is fresh (and now remembered), else why not."""
        # A preamble is only admitted within the window of now, so one older than twice
        # the window can no longer be replayed: forget it.
        while self._seen and next(iter(self._seen.values())) < now_ms - 2 * self.window_ms:
            self._seen.popitem(last=False)
        if admitted.nonce in self._seen:
            return Refused("the preamble was used before (a replay)")
        if len(self._seen) >= self.limit:
            return Refused(
                f"more than {self.limit} new connections within {2 * self.window_ms // 1000}s"
            )
        self._seen[admitted.nonce] = now_ms
        return None
