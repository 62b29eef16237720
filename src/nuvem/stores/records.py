"""The records nuvem keeps (functions, API keys, events) and `RecordStore`, their interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from nuvem.stack.function import FunctionSpec


@dataclass(frozen=True, slots=True)
class FunctionRecord:
    spec: FunctionSpec
    replicas: int  # desired replica count
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str  # public part of the key, shown in listings
    name: str
    secret_hash: str  # sha256 hex of the secret part; the secret itself is never stored
    functions: tuple[str, ...] | None  # None: every function
    created_at: float
    revoked_at: float | None = None
    rate: float | None = None  # calls per second on average; None: the gateway's default
    burst: int | None = None  # calls at once; None: the default, or about one second's worth

    def allows(self, function: str) -> bool:
        return self.revoked_at is None and (self.functions is None or function in self.functions)


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    time: float
    kind: str  # e.g. "deployed", "scaled", "replica_died"
    function: str | None
    message: str
    data: dict[str, Any] = field(default_factory=dict)


class RecordStore(Protocol):
    """Durable records: functions, API keys, events and settings."""

    def put_function(self, spec: FunctionSpec, replicas: int) -> FunctionRecord: ...
    def get_function(self, name: str) -> FunctionRecord | None: ...
    def list_functions(self) -> list[FunctionRecord]: ...
    def delete_function(self, name: str) -> bool: ...
    def set_replicas(self, name: str, replicas: int) -> None: ...

    def put_key(self, key: ApiKeyRecord) -> None: ...
    def get_key(self, key_id: str) -> ApiKeyRecord | None: ...
    def list_keys(self) -> list[ApiKeyRecord]: ...
    def revoke_key(self, key_id: str, when: float) -> bool: ...

    def add_event(
        self,
        kind: str,
        function: str | None,
        message: str,
        data: dict[str, Any] | None = None,
        when: float | None = None,
    ) -> EventRecord: ...
    def list_events(
        self, function: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[EventRecord]:
        """Events in ascending id order, only `function`'s when it is given.

        With `after_id` <= 0: the newest `limit` events (a tail). Otherwise: the first
        `limit` events after `after_id` (a follower pages forward with the last id it saw).
        A `limit` <= 0 returns nothing.
        """
        ...

    def get_setting(self, name: str) -> str | None: ...
    def set_setting(self, name: str, value: str) -> None: ...

    def close(self) -> None: ...
