"""The record stores: SQLite and the memory fake must behave identically."""

from __future__ import annotations

import dataclasses
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from nuvem.errors import BadRequest, NotFound, NuvemError
from nuvem.stack.function import FunctionSpec
from nuvem.stores.memory import MemoryRecordStore
from nuvem.stores.postgres import PostgresRecordStore
from nuvem.stores.record_codec import SCHEMA_VERSION
from nuvem.stores.records import ApiKeyRecord, EventRecord, RecordStore
from nuvem.stores.sql_records import SqliteRecordStore
from support import FakeClock


def spec(name: str = "echo", **fields: Any) -> FunctionSpec:
    return FunctionSpec.model_validate({"name": name, "handler": "functions:echo", **fields})


def key(key_id: str = "0123456789ab", **fields: Any) -> ApiKeyRecord:
    values: dict[str, Any] = {
        "id": key_id,
        "name": "ci",
        "secret_hash": "f" * 64,
        "functions": None,
        "created_at": 5.0,
    }
    return ApiKeyRecord(**{**values, **fields})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000.0)


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[RecordStore]:
    made: RecordStore
    if request.param == "sqlite":
        made = SqliteRecordStore(tmp_path / "state" / "records.db", clock=clock)
    elif request.param == "postgres":
        made = PostgresRecordStore(request.getfixturevalue("postgres_url"), clock=clock)
    else:
        made = MemoryRecordStore(clock=clock)
    yield made
    made.close()


# functions


def test_put_and_get_function_round_trips_the_spec(store: RecordStore) -> None:
    full = spec(
        requirements=["numpy==2.4.6"],
        env={"MODE": "fast"},
        resources={"cpu": 0.5, "memory": "512Mi", "gpu": 1},
        scaling={"min": 0, "max": 3},
        timeout="2m",
        labels={"team": "vision"},
    )
    put = store.put_function(full, replicas=2)
    got = store.get_function("echo")
    assert got == put
    assert got.spec == full
    assert (got.replicas, got.created_at, got.updated_at) == (2, 1000.0, 1000.0)


def test_get_unknown_function_is_none(store: RecordStore) -> None:
    assert store.get_function("nope") is None


def test_put_again_keeps_created_at(store: RecordStore, clock: FakeClock) -> None:
    store.put_function(spec(), replicas=1)
    clock.advance(10)
    updated = store.put_function(spec(timeout=5), replicas=3)
    assert (updated.created_at, updated.updated_at, updated.replicas) == (1000.0, 1010.0, 3)
    assert store.get_function("echo") == updated
    assert updated.spec.timeout == 5


def test_list_functions_orders_by_name(store: RecordStore) -> None:
    for name in ["zeta", "alpha", "mid"]:
        store.put_function(spec(name), replicas=1)
    assert [r.spec.name for r in store.list_functions()] == ["alpha", "mid", "zeta"]


def test_delete_function(store: RecordStore) -> None:
    store.put_function(spec(), replicas=1)
    assert store.delete_function("echo") is True
    assert store.delete_function("echo") is False
    assert store.get_function("echo") is None
    assert store.list_functions() == []


def test_set_replicas(store: RecordStore, clock: FakeClock) -> None:
    store.put_function(spec(), replicas=1)
    clock.advance(3)
    store.set_replicas("echo", 0)
    got = store.get_function("echo")
    assert got is not None
    assert (got.replicas, got.created_at, got.updated_at) == (0, 1000.0, 1003.0)


def test_set_replicas_of_unknown_function_is_not_found(store: RecordStore) -> None:
    with pytest.raises(NotFound, match="'ghost'"):
        store.set_replicas("ghost", 1)


def test_negative_replicas_are_rejected(store: RecordStore) -> None:
    with pytest.raises(BadRequest, match="-1"):
        store.put_function(spec(), replicas=-1)
    store.put_function(spec(), replicas=1)
    with pytest.raises(BadRequest, match="-2"):
        store.set_replicas("echo", -2)
    assert store.get_function("echo") is not None


# API keys


def test_key_round_trip(store: RecordStore) -> None:
    scoped = key("aaaaaaaaaaaa", functions=("echo", "resnet"))
    everything = key("bbbbbbbbbbbb")
    store.put_key(scoped)
    store.put_key(everything)
    assert store.get_key("aaaaaaaaaaaa") == scoped
    assert store.get_key("bbbbbbbbbbbb") == everything
    assert store.get_key("cccccccccccc") is None


def test_key_rate_limits_round_trip(store: RecordStore) -> None:
    limited = key(rate=2.5, burst=10)
    store.put_key(limited)
    assert store.get_key(limited.id) == limited
    store.put_key(dataclasses.replace(limited, rate=None, burst=None))
    found = store.get_key(limited.id)
    assert found is not None
    assert (found.rate, found.burst) == (None, None)


def test_put_key_replaces(store: RecordStore) -> None:
    store.put_key(key(name="old"))
    store.put_key(key(name="new", functions=()))
    assert store.get_key("0123456789ab") == key(name="new", functions=())
    assert len(store.list_keys()) == 1


def test_list_keys_oldest_first(store: RecordStore) -> None:
    store.put_key(key("cccccccccccc", created_at=2.0))
    store.put_key(key("bbbbbbbbbbbb", created_at=1.0))
    store.put_key(key("aaaaaaaaaaaa", created_at=2.0))
    assert [k.id for k in store.list_keys()] == ["bbbbbbbbbbbb", "aaaaaaaaaaaa", "cccccccccccc"]


def test_revoke_key(store: RecordStore) -> None:
    store.put_key(key(functions=("echo",)))
    assert store.revoke_key("0123456789ab", when=50.0) is True
    assert store.revoke_key("0123456789ab", when=60.0) is True
    revoked = store.get_key("0123456789ab")
    assert revoked is not None
    assert revoked.revoked_at == 50.0
    assert not revoked.allows("echo")
    assert store.revoke_key("ffffffffffff", when=1.0) is False


# events


def test_add_event(store: RecordStore, clock: FakeClock) -> None:
    first = store.add_event("deployed", "echo", "deployed echo")
    second = store.add_event("scaled", None, "scaled", data={"to": 3, "why": ["load"]}, when=7.5)
    assert (first.id, first.time, first.kind, first.function, first.data) == (
        1,
        1000.0,
        "deployed",
        "echo",
        {},
    )
    assert (second.id, second.time, second.data) == (2, 7.5, {"to": 3, "why": ["load"]})
    assert store.list_events() == [first, second]


def test_event_data_is_copied(store: RecordStore) -> None:
    data: dict[str, Any] = {"nested": {"n": 1}}
    store.add_event("scaled", "echo", "x", data=data)
    data["nested"]["n"] = 2
    listed = store.list_events()[0]
    listed.data["nested"]["n"] = 3
    assert store.list_events()[0].data == {"nested": {"n": 1}}


def test_event_data_must_be_json(store: RecordStore) -> None:
    with pytest.raises(TypeError):
        store.add_event("scaled", "echo", "x", data={"when": object()})
    assert store.list_events() == []


def ids(events: list[EventRecord]) -> list[int]:
    return [event.id for event in events]


def test_list_events_tail_and_paging(store: RecordStore) -> None:
    for i in range(10):
        store.add_event("tick", "a" if i % 2 == 0 else "b", f"event {i}")
    assert ids(store.list_events(limit=3)) == [8, 9, 10]
    assert ids(store.list_events(after_id=0)) == list(range(1, 11))
    assert ids(store.list_events(after_id=4, limit=3)) == [5, 6, 7]
    assert ids(store.list_events(after_id=10)) == []
    assert ids(store.list_events("a", limit=2)) == [7, 9]
    assert ids(store.list_events("b", after_id=2, limit=2)) == [4, 6]
    assert ids(store.list_events("ghost")) == []
    assert store.list_events(limit=0) == []
    assert store.list_events(after_id=3, limit=-1) == []


# settings


def test_settings(store: RecordStore) -> None:
    assert store.get_setting("admin_password") is None
    store.set_setting("admin_password", "hash-1")
    store.set_setting("admin_password", "hash-2")
    assert store.get_setting("admin_password") == "hash-2"


def test_schema_version_is_recorded(store: RecordStore) -> None:
    assert store.get_setting("schema_version") == str(SCHEMA_VERSION)


def test_close_twice_is_harmless(store: RecordStore) -> None:
    store.close()
    store.close()


# SQLite only


def test_sqlite_records_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    clock = FakeClock(1_000.0)
    first = SqliteRecordStore(path, clock=clock)
    function = first.put_function(spec(scaling={"min": 0}), replicas=2)
    first.put_key(key(functions=("echo",)))
    first.revoke_key("0123456789ab", when=9.0)
    events = [first.add_event("deployed", "echo", "hello", data={"n": 1})]
    first.set_setting("admin_password", "hash")
    first.close()

    again = SqliteRecordStore(path, clock=clock)
    try:
        assert again.list_functions() == [function]
        assert again.list_keys() == [key(functions=("echo",), revoked_at=9.0)]
        assert again.list_events() == events
        assert again.get_setting("admin_password") == "hash"
        assert again.get_setting("schema_version") == str(SCHEMA_VERSION)
        assert again.add_event("scaled", "echo", "next").id == 2
    finally:
        again.close()


def test_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    SqliteRecordStore(path).close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    store = SqliteRecordStore(path)
    store.set_setting("schema_version", "99")
    store.close()
    with pytest.raises(NuvemError, match="schema version '99'") as caught:
        SqliteRecordStore(path)
    assert "upgrade nuvem" in str(caught.value)


def test_sqlite_is_safe_across_threads(tmp_path: Path) -> None:
    stores = [SqliteRecordStore(tmp_path / "records.db") for _ in range(2)]
    errors: list[BaseException] = []

    def work(store: SqliteRecordStore, worker: int) -> None:
        try:
            for i in range(15):
                store.put_function(spec(f"f{worker}"), replicas=i)
                store.add_event("tick", f"f{worker}", str(i))
                store.list_events(limit=5)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(stores[w % 2], w)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert [e.id for e in stores[0].list_events(limit=1000)] == list(range(1, 91))
        assert {r.spec.name: r.replicas for r in stores[1].list_functions()} == {
            f"f{w}": 14 for w in range(6)
        }
    finally:
        for store in stores:
            store.close()


# both stores driven by the same random operations give the same answers


NAMES = st.sampled_from(["alpha", "beta", "gamma"])
KEY_IDS = st.sampled_from(["aaaaaaaaaaaa", "bbbbbbbbbbbb"])


class SameBehaviour(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(1_000.0)
        self.folder = tempfile.TemporaryDirectory()
        self.sqlite = SqliteRecordStore(Path(self.folder.name) / "records.db", clock=self.clock)
        self.memory = MemoryRecordStore(clock=self.clock)

    def both(self, call: Callable[[RecordStore], Any]) -> Any:
        outcomes = []
        for store in (self.sqlite, self.memory):
            try:
                outcomes.append(("ok", call(store)))
            except NuvemError as error:
                outcomes.append((type(error).__name__, str(error)))
        assert outcomes[0] == outcomes[1]
        return outcomes[0]

    @rule(seconds=st.floats(0, 100))
    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(name=NAMES, replicas=st.integers(-1, 5), timeout=st.integers(1, 60))
    def put_function(self, name: str, replicas: int, timeout: int) -> None:
        self.both(lambda s: s.put_function(spec(name, timeout=timeout), replicas))

    @rule(name=NAMES, replicas=st.integers(-1, 5))
    def set_replicas(self, name: str, replicas: int) -> None:
        self.both(lambda s: s.set_replicas(name, replicas))

    @rule(name=NAMES)
    def delete_function(self, name: str) -> None:
        self.both(lambda s: s.delete_function(name))

    @rule(key_id=KEY_IDS, created=st.integers(0, 3), scoped=st.booleans())
    def put_key(self, key_id: str, created: int, scoped: bool) -> None:
        record = key(key_id, created_at=float(created), functions=("alpha",) if scoped else None)
        self.both(lambda s: s.put_key(record))

    @rule(key_id=KEY_IDS, when=st.floats(0, 10))
    def revoke_key(self, key_id: str, when: float) -> None:
        self.both(lambda s: s.revoke_key(key_id, when))

    @rule(function=st.none() | NAMES, data=st.dictionaries(st.text(max_size=3), st.integers()))
    def add_event(self, function: str | None, data: dict[str, int]) -> None:
        self.both(lambda s: s.add_event("tick", function, "m", data=data))

    @rule(function=st.none() | NAMES, after_id=st.integers(-1, 12), limit=st.integers(-1, 6))
    def list_events(self, function: str | None, after_id: int, limit: int) -> None:
        self.both(lambda s: s.list_events(function, after_id, limit))

    @rule(name=st.sampled_from(["a", "b"]), value=st.text(max_size=5))
    def set_setting(self, name: str, value: str) -> None:
        self.both(lambda s: s.set_setting(name, value))

    @invariant()
    def same_records(self) -> None:
        self.both(lambda s: (s.list_functions(), s.list_keys(), s.get_setting("a")))

    def teardown(self) -> None:
        self.sqlite.close()
        self.memory.close()
        self.folder.cleanup()


SameBehaviour.TestCase.settings = settings(max_examples=15, stateful_step_count=15, deadline=None)
test_stores_behave_the_same = SameBehaviour.TestCase
