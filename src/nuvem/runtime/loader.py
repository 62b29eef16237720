"""Resolve a handler reference (`module:callable` or `path/to/file.py[:callable]`).

Standard library only: runs inside the worker process.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nuvem.handler import Request

DEFAULT_ATTRIBUTE = "handle"


class HandlerLoadError(Exception):
    """The handler reference could not be resolved to a callable."""


@dataclass(slots=True)
class LoadedHandler:
    call: Callable[[Request], Any]
    is_async: bool
    # A class with `predict(batch: list) -> list`: calls run in batches (runtime/batching.py).
    predict: Callable[[list[Request]], Any] | None = None


def split_reference(reference: str) -> tuple[str, str]:
    """`pkg.mod:fn` -> ("pkg.mod", "fn"); `file.py` -> ("file.py", "handle")."""
    target, sep, attribute = reference.rpartition(":")
    if not sep or "/" in attribute or attribute.endswith(".py"):
        return reference, DEFAULT_ATTRIBUTE
    return target, attribute


def _import_target(target: str, root: Path) -> Any:
    if target.endswith(".py") or "/" in target:
        path = (root / target).resolve()
        if not path.is_file():
            raise HandlerLoadError(f"handler file {path} does not exist")
        name = f"nuvem_handler_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise HandlerLoadError(f"cannot import {path} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    root_text = str(root)
    if root_text not in sys.path:
        sys.path.insert(0, root_text)
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            raise HandlerLoadError(
                f"module {target!r} not found in {root}; the handler is resolved from the "
                "stack file's folder (write module:callable or path/to/file.py:callable)"
            ) from exc
        raise


async def load(reference: str, root: Path) -> LoadedHandler:
    """Import the handler, instantiate a class and run its `setup()` once."""
    target, attribute = split_reference(reference)
    module = _import_target(target, root)
    try:
        obj = getattr(module, attribute)
    except AttributeError:
        raise HandlerLoadError(
            f"{target!r} has no attribute {attribute!r}; define `def {attribute}(req)` "
            "there or name another callable after the colon"
        ) from None
    if inspect.isclass(obj):
        instance = obj()
        setup = getattr(instance, "setup", None)
        if setup is not None:
            outcome = setup()
            if inspect.isawaitable(outcome):
                await outcome
        obj = instance
        predict = getattr(instance, "predict", None)
        if callable(predict):
            return LoadedHandler(call=lambda r: predict([r])[0], is_async=False, predict=predict)
    if not callable(obj):
        raise HandlerLoadError(f"{reference!r} is a {type(obj).__name__}, not a callable")
    call_method = obj if inspect.isfunction(obj) or inspect.ismethod(obj) else obj.__call__
    is_async = inspect.iscoroutinefunction(call_method)
    return LoadedHandler(call=obj, is_async=is_async)


async def invoke(handler: LoadedHandler, request: Request) -> Any:
    """Run an async handler; a sync handler that returns an awaitable is awaited too."""
    result = handler.call(request)
    if inspect.isawaitable(result):
        result = await result
    return result


def run_coroutine_sync(value: Any) -> Any:
    """A sync handler running in a thread returned a coroutine: run it to completion there."""
    if inspect.iscoroutine(value):
        return asyncio.run(value)
    return value
