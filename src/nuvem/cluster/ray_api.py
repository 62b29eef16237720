"""The few parts of Ray the runtime uses, typed, in one place.

Ray is an optional dependency (`nuvem[ray]`) and mostly untyped: everything that touches
it goes through here, so the rest of the code stays strictly typed and imports nothing
from Ray until a cluster is in use.
"""

from __future__ import annotations

import importlib
from typing import Any

from nuvem.errors import Unavailable


def _ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise Unavailable(
            "the cluster engine Ray is not installed",
            "install nuvem with its ray extra: pip install 'nuvem[ray]'",
        ) from None


def actor_died_errors() -> tuple[type[BaseException], ...]:
    """Raised by calls to an actor that is gone (its node lost, or it was killed)."""
    return (_ray().exceptions.RayActorError,)


def task_error() -> type[BaseException]:
    """Raised by a call whose method raised; `.cause` holds the original exception."""
    error: type[BaseException] = _ray().exceptions.RayTaskError
    return error


def remote_actor(cls: type[Any], options: dict[str, Any], *args: Any) -> Any:
    """A new actor of `cls` with `options` (resources, labels, scheduling)."""
    return _ray().remote(cls).options(**options).remote(*args)


def put(data: bytes) -> Any:
    """`data` in the cluster's object store; the reference nodes fetch it by."""
    return _ray().put(data)


def kill(actor: Any) -> None:
    _ray().kill(actor, no_restart=True)


def node_ip() -> str:
    """This node's address as the cluster knows it."""
    address: str = _ray().util.get_node_ip_address()
    return address


def nodes() -> list[dict[str, Any]]:
    """Every node the cluster has known, dead ones included (`Alive` says which)."""
    found: list[dict[str, Any]] = _ray().nodes()
    return found


def free_resources_per_node() -> dict[str, dict[str, float]]:
    """Node id -> its resources free now."""
    state = importlib.import_module("ray._private.state")
    free: dict[str, dict[str, float]] = state.available_resources_per_node()
    return free
