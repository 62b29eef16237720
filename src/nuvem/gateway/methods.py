"""Which methods each path takes, read from the OpenAPI document the gateway serves.

The document is the one list: OPTIONS on a path answers 204 with the methods it names in
`Allow`, and any other method it does not name answers 405 with the same `Allow` (RFC 9110
§9.3.7 and §15.5.6), whichever part of the gateway serves the path. Paths the document does
not describe (the dashboard, /docs) are left to the routes that serve them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from nuvem.errors import MethodNotAllowed

_VERBS = ("get", "head", "post", "put", "patch", "delete", "options")
_PARAMETER = re.compile(r"\{[^/{}]+\}")


def allow_header(methods: Iterable[str]) -> tuple[str, ...]:
    """`Allow` for a path taking `methods`: HEAD comes with GET, OPTIONS always (both are
    answered for every such path), in the order of _VERBS."""
    named = {m.lower() for m in methods} | {"options"}
    if "get" in named:
        named.add("head")
    return tuple(verb.upper() for verb in _VERBS if verb in named)


def not_allowed(method: str, path: str, allow: tuple[str, ...]) -> MethodNotAllowed:
    return MethodNotAllowed(
        f"{method} is not allowed on {path}",
        f"use {', '.join(allow)}; see /openapi.json",
        allow=allow,
    )


def _pattern(template: str) -> re.Pattern[str]:
    pieces = _PARAMETER.split(template)
    return re.compile("[^/]+".join(re.escape(piece) for piece in pieces) + r"\Z")


class MethodTable:
    """Path templates with the methods the document names for each."""

    def __init__(self, paths: Mapping[str, Mapping[str, Any]]) -> None:
        exact: dict[str, tuple[str, ...]] = {}
        # Templates grouped by their first segment: a model call (/v2/...) tries the /v2
        # templates only, not every one (9 µs -> 2 µs for /v2/models/{name}/infer here).
        routes: dict[str, list[tuple[re.Pattern[str], tuple[str, ...]]]] = {}
        for template, item in paths.items():
            allow = allow_header(m for m in item if m in _VERBS)
            if _PARAMETER.search(template):
                routes.setdefault(_first(template), []).append((_pattern(template), allow))
            else:
                exact[template] = allow
        self._exact = exact
        self._routes = routes

    def allowed(self, path: str) -> tuple[str, ...] | None:
        """The `Allow` of `path`, or None when the document does not describe it."""
        found = self._exact.get(path)
        if found is not None:
            return found
        for pattern, allow in self._routes.get(_first(path), ()):
            if pattern.match(path):
                return allow
        return None


def _first(path: str) -> str:
    return path.split("/", 2)[1] if path.startswith("/") else ""
