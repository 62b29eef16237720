"""`MemoryRecordStore`: an in-memory fake that behaves exactly like `SqliteRecordStore`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from nuvem.stack.function import FunctionSpec
from nuvem.stores.record_codec import (
    SCHEMA_VERSION,
    SCHEMA_VERSION_SETTING,
    check_replicas,
    encode_data,
    encode_spec,
    event_record,
    function_not_found,
    function_record,
)
from nuvem.stores.records import ApiKeyRecord, EventRecord, FunctionRecord


class MemoryRecordStore:
    """Records in dictionaries, for fast tests. Nothing survives the object.

    Specs and event data are kept as JSON text, as the SQLite store keeps them, so callers
    get fresh objects on every read and the same encoding errors on every write.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._functions: dict[str, tuple[str, int, float, float]] = {}
        self._keys: dict[str, ApiKeyRecord] = {}
        self._events: list[tuple[int, float, str, str | None, str, str]] = []
        self._last_event_id = 0
        self._settings = {SCHEMA_VERSION_SETTING: str(SCHEMA_VERSION)}

    # functions

    def put_function(self, spec: FunctionSpec, replicas: int) -> FunctionRecord:
        check_replicas(replicas)
        now = self._clock()
        encoded = encode_spec(spec)
        with self._lock:
            old = self._functions.get(spec.name)
            created = now if old is None else old[2]
            self._functions[spec.name] = (encoded, replicas, created, now)
        return FunctionRecord(spec=spec, replicas=replicas, created_at=created, updated_at=now)

    def get_function(self, name: str) -> FunctionRecord | None:
        with self._lock:
            row = self._functions.get(name)
        return None if row is None else _function_record(row)

    def list_functions(self) -> list[FunctionRecord]:
        """Every function, by name."""
        with self._lock:
            rows = [self._functions[name] for name in sorted(self._functions)]
        return [_function_record(row) for row in rows]

    def delete_function(self, name: str) -> bool:
        with self._lock:
            return self._functions.pop(name, None) is not None

    def set_replicas(self, name: str, replicas: int) -> None:
        """Sets the desired replica count and updated_at; NotFound for an unknown name."""
        check_replicas(replicas)
        with self._lock:
            row = self._functions.get(name)
            if row is None:
                raise function_not_found(name)
            self._functions[name] = (row[0], replicas, row[2], self._clock())

    # API keys

    def put_key(self, key: ApiKeyRecord) -> None:
        """Stores the key, replacing any key with the same id."""
        with self._lock:
            self._keys[key.id] = key

    def get_key(self, key_id: str) -> ApiKeyRecord | None:
        with self._lock:
            return self._keys.get(key_id)

    def list_keys(self) -> list[ApiKeyRecord]:
        """Every key, revoked ones included, oldest first."""
        with self._lock:
            return sorted(self._keys.values(), key=lambda key: (key.created_at, key.id))

    def revoke_key(self, key_id: str, when: float) -> bool:
        """Marks the key revoked; False if there is no such key. Revoking twice keeps the
        first time."""
        with self._lock:
            key = self._keys.get(key_id)
            if key is None:
                return False
            if key.revoked_at is None:
                self._keys[key_id] = replace(key, revoked_at=when)
            return True

    # events

    def add_event(
        self,
        kind: str,
        function: str | None,
        message: str,
        data: dict[str, Any] | None = None,
        when: float | None = None,
    ) -> EventRecord:
        encoded = encode_data(data)
        at = self._clock() if when is None else when
        with self._lock:
            self._last_event_id += 1
            row = (self._last_event_id, at, kind, function, message, encoded)
            self._events.append(row)
        return _event_record(row)

    def list_events(
        self, function: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[EventRecord]:
        """As `RecordStore.list_events` says."""
        if limit <= 0:
            return []
        with self._lock:
            rows = [row for row in self._events if function is None or row[3] == function]
        rows = [row for row in rows if row[0] > after_id][:limit] if after_id > 0 else rows[-limit:]
        return [_event_record(row) for row in rows]

    # settings

    def get_setting(self, name: str) -> str | None:
        with self._lock:
            return self._settings.get(name)

    def set_setting(self, name: str, value: str) -> None:
        with self._lock:
            self._settings[name] = value

    def close(self) -> None:
        """Nothing to release; kept for the `RecordStore` protocol."""


def _function_record(row: tuple[str, int, float, float]) -> FunctionRecord:
    return function_record(*row)


def _event_record(row: tuple[int, float, str, str | None, str, str]) -> EventRecord:
    return event_record(*row)
