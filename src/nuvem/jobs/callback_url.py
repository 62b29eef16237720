"""Callback URLs are checked so a job cannot make the gateway call into its own network's
metadata services (server-side request forgery)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from nuvem.errors import BadRequest

# Cloud metadata endpoints: reading them from the gateway's host would leak its credentials.
METADATA_HOSTS = frozenset(
    {
        "169.254.169.254",
        "fd00:ec2::254",
        "100.100.100.200",
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
    }
)
_HINT = (
    "use an http(s) URL the gateway can reach that is not link-local or a metadata service, "
    "or allow its host with NUVEM_CALLBACK_ALLOW_HOSTS"
)


def check_callback_url(url: str, allow_hosts: frozenset[str] = frozenset()) -> str:
    """The URL, when its form and (literal) address are acceptable; BadRequest otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BadRequest(f"callback URL {url!r} must use http or https", _HINT)
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise BadRequest(f"callback URL {url!r} has no host", _HINT)
    if parts.username or parts.password:
        raise BadRequest(f"callback URL {url!r} must not carry credentials", _HINT)
    try:
        _ = parts.port
    except ValueError:
        raise BadRequest(f"callback URL {url!r} has an invalid port", _HINT) from None
    if host in allow_hosts:
        return url
    if host in METADATA_HOSTS:
        raise BadRequest(f"callback URL {url!r} points at a cloud metadata service", _HINT)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return url  # a name: checked again once resolved, when the callback is sent
    _check_address(url, address)
    return url


def _check_address(url: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    if str(address) in METADATA_HOSTS:
        raise BadRequest(f"callback URL {url!r} points at a cloud metadata service", _HINT)
    if address.is_link_local or address.is_multicast or address.is_unspecified:
        raise BadRequest(
            f"callback URL {url!r} points at {address}, a link-local, multicast or "
            "unspecified address",
            _HINT,
        )


class Unresolved(OSError):
    """The callback's host does not resolve (now): retried like a receiver that is down,
    since DNS can come back; it is no refusal the allow list could lift."""


async def check_resolved(url: str, allow_hosts: frozenset[str] = frozenset()) -> None:
    """Check every address the URL's host resolves to, right before sending to it: a
    forbidden one is BadRequest (final), a failed resolution `Unresolved` (retried)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if host in allow_hosts:
        return
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, parts.port or 80, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Unresolved(f"callback host {host!r} does not resolve: {exc}") from None
    for info in infos:
        _check_address(url, ipaddress.ip_address(info[4][0]))
