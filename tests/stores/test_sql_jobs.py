"""The SQL job store on SQLite: submit, claim under leases, retries, callbacks, expiry."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nuvem.stores.job import (
    CallbackState,
    Finish,
    JobRequest,
    JobResult,
    JobState,
    JobStore,
    NewJob,
)
from nuvem.stores.sql_jobs import SqlJobStore
from support import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(
    backend: str, tmp_path: Path, clock: FakeClock, request: pytest.FixtureRequest
) -> Iterator[JobStore]:
    opened: JobStore
    if backend == "sqlite":
        opened = SqlJobStore.sqlite(tmp_path / "jobs.db", clock=clock)
    elif backend == "postgres":
        opened = SqlJobStore.postgres(request.getfixturevalue("postgres_url"), clock=clock)
    else:
        from nuvem.stores.redis_jobs import RedisJobStore

        records = SqlJobStore.postgres(request.getfixturevalue("postgres_url"), clock=clock)
        opened = RedisJobStore(records, request.getfixturevalue("clean_redis"), clock=clock)
    yield opened
    opened.close()


@pytest.fixture
def sql_only(backend: str) -> None:
    if backend == "redis":
        pytest.skip("Redis hands out expired leases by real idle time; see test_redis_jobs.py")


def new(
    job_id: str,
    function: str = "f",
    callback_url: str | None = None,
    idempotency_key: str | None = None,
) -> NewJob:
    request = JobRequest("POST", "/", "a=1", (("x-h", "v"),), b"body-" + job_id.encode())
    return NewJob(job_id, function, request, 3, callback_url, idempotency_key)


RESULT = JobResult(200, (("content-type", "text/plain"),), b"done", 0.5)


def test_submit_then_get_keeps_the_request(store: JobStore) -> None:
    job, created = store.submit(new("a"))
    assert created
    assert job.state is JobState.QUEUED
    found = store.get("a")
    assert found is not None
    assert found.request.body == b"body-a"
    assert found.request.headers == (("x-h", "v"),)
    assert found.request.query == "a=1"
    assert store.get("missing") is None


def test_idempotency_key_returns_the_first_job(store: JobStore) -> None:
    first, created = store.submit(new("a", idempotency_key="k1"))
    again, created_again = store.submit(new("b", idempotency_key="k1"))
    assert created
    assert not created_again
    assert again.id == first.id == "a"
    assert store.get("b") is None


def test_submit_many_keeps_order_and_idempotency(store: JobStore) -> None:
    store.submit(new("old", idempotency_key="k-old"))
    answers = store.submit_many(
        [
            new("a"),
            new("b", idempotency_key="k-old"),  # an earlier submit's key: that job comes back
            new("c", idempotency_key="k-new"),
            new("d", idempotency_key="k-new"),  # the same key twice in one batch: one job
            new("e"),
        ]
    )
    assert [(job.id, created) for job, created in answers] == [
        ("a", True),
        ("old", False),
        ("c", True),
        ("c", False),
        ("e", True),
    ]
    assert all(job.state is JobState.QUEUED for job, _ in answers)
    assert store.get("b") is None
    assert store.get("d") is None
    assert {j.id for j in store.claim("me", {"f": 10}, lease=10)} == {"old", "a", "c", "e"}
    assert store.submit_many([]) == []


def test_finish_many_answers_for_each_job(store: JobStore, clock: FakeClock) -> None:
    for job_id in ("a", "b", "c", "d"):
        store.submit(new(job_id))
    store.claim("me", {"f": 3}, lease=10)  # a, b, c run here; d stays queued
    done = Finish(JobState.SUCCEEDED, RESULT, expires_at=clock.now + 60)
    again = Finish(JobState.QUEUED, RESULT, "status 503", retry_at=clock.now + 30)
    answers = store.finish_many(
        "me", [("a", done), ("b", again), ("d", done), ("a", again), ("missing", done)]
    )
    # d was never claimed, a's second end comes after its first, missing does not exist.
    assert answers == [True, True, False, False, False]
    a, b, c, d = (store.get(i) for i in "abcd")
    assert a is not None
    assert a.state is JobState.SUCCEEDED
    assert a.result == RESULT
    assert b is not None
    assert b.state is JobState.QUEUED
    assert b.available_at == clock.now + 30
    assert c is not None
    assert c.state is JobState.RUNNING
    assert d is not None
    assert d.state is JobState.QUEUED
    assert store.finish_many("other", [("c", done)]) == [False]
    assert store.finish_many("me", []) == []


def test_claim_respects_capacity_per_function(store: JobStore) -> None:
    for i in range(5):
        store.submit(new(f"f{i}", "f"))
    store.submit(new("g0", "g"))
    claimed = store.claim("me", {"f": 2, "g": 0}, lease=10)
    assert [j.id for j in claimed] == ["f0", "f1"]
    assert all(j.state is JobState.RUNNING and j.attempts == 1 for j in claimed)
    assert claimed[0].request.body == b"body-f0"
    # Jobs already running are not claimed twice while their lease holds.
    assert [j.id for j in store.claim("other", {"f": 10}, lease=10)] == ["f2", "f3", "f4"]


def test_capacity_counts_jobs_running_on_every_gateway(store: JobStore, clock: FakeClock) -> None:
    for i in range(6):
        store.submit(new(f"f{i}"))
    assert len(store.claim("a", {"f": 3}, lease=10)) == 3
    assert store.claim("b", {"f": 3}, lease=10) == []  # a runs three: none is free
    assert store.finish("a", "f0", Finish(JobState.SUCCEEDED, RESULT, expires_at=1e12))
    assert [j.id for j in store.claim("b", {"f": 3}, lease=10)] == ["f3"]
    assert store.claim("a", {"f": 4}, lease=10) != []  # a higher limit makes room


def test_counts_jobs_by_function_and_state(store: JobStore) -> None:
    assert store.counts() == {}
    for i in range(3):
        store.submit(new(f"f{i}", "f"))
    store.submit(new("g0", "g"))
    store.claim("me", {"f": 2, "g": 0}, lease=10)
    assert store.finish("me", "f0", Finish(JobState.DEAD_LETTER, RESULT, expires_at=1e12))
    assert store.counts() == {
        ("f", JobState.DEAD_LETTER): 1,
        ("f", JobState.RUNNING): 1,
        ("f", JobState.QUEUED): 1,
        ("g", JobState.QUEUED): 1,
    }


@pytest.mark.usefixtures("sql_only")
def test_jobs_under_lost_leases_do_not_count(store: JobStore, clock: FakeClock) -> None:
    for i in range(4):
        store.submit(new(f"f{i}"))
    assert len(store.claim("a", {"f": 3}, lease=10)) == 3
    clock.now += 11  # a died: its leases ran out, so its jobs are claimable and count no more
    assert len(store.claim("c", {"f": 3}, lease=10)) == 3


@pytest.mark.usefixtures("sql_only")
def test_expired_lease_is_reclaimed_and_counts_an_attempt(
    store: JobStore, clock: FakeClock
) -> None:
    store.submit(new("a"))
    store.claim("dead-gateway", {"f": 1}, lease=10)
    clock.now += 5
    assert store.claim("me", {"f": 1}, lease=10) == []
    clock.now += 6
    (job,) = store.claim("me", {"f": 1}, lease=10)
    assert job.attempts == 2
    assert job.owner == "me"
    # The old owner lost it: its late finish is refused.
    assert not store.finish("dead-gateway", "a", Finish(JobState.SUCCEEDED, RESULT))
    assert store.finish("me", "a", Finish(JobState.SUCCEEDED, RESULT, expires_at=clock.now + 60))
    done = store.get("a")
    assert done is not None
    assert done.state is JobState.SUCCEEDED
    assert done.result == RESULT


def test_renew_keeps_the_lease_and_reports_lost_ones(store: JobStore, clock: FakeClock) -> None:
    store.submit(new("a"))
    store.submit(new("b"))
    store.claim("me", {"f": 2}, lease=10)
    store.cancel("b", clock.now + 60)
    clock.now += 8
    assert store.renew("me", ["a", "b"], lease=10) == {"b"}
    clock.now += 8
    assert store.claim("other", {"f": 5}, lease=10) == []


def test_retry_waits_until_its_time(store: JobStore, clock: FakeClock) -> None:
    store.submit(new("a"))
    store.claim("me", {"f": 1}, lease=10)
    store.finish("me", "a", Finish(JobState.QUEUED, error="status 503", retry_at=clock.now + 30))
    job = store.get("a")
    assert job is not None
    assert job.state is JobState.QUEUED
    assert job.error == "status 503"
    assert store.claim("me", {"f": 1}, lease=10) == []
    clock.now += 31
    (again,) = store.claim("me", {"f": 1}, lease=10)
    assert again.attempts == 2


def test_cancel_only_active_jobs(store: JobStore, clock: FakeClock) -> None:
    store.submit(new("a"))
    store.submit(new("b"))
    store.claim("me", {"f": 1}, lease=10)
    store.finish("me", "a", Finish(JobState.SUCCEEDED, RESULT, expires_at=clock.now + 60))
    done = store.cancel("a", clock.now + 60)
    assert done is not None
    assert done.state is JobState.SUCCEEDED
    cancelled = store.cancel("b", clock.now + 60)
    assert cancelled is not None
    assert cancelled.state is JobState.CANCELLED
    assert store.claim("me", {"f": 5}, lease=10) == []
    assert store.cancel("missing", 0) is None


def test_callbacks_are_pending_once_finished_and_leased(store: JobStore, clock: FakeClock) -> None:
    store.submit(new("a", callback_url="http://example.com/cb"))
    assert store.claim_callbacks("me", 10, lease=30) == []
    store.claim("me", {"f": 1}, lease=10)
    store.finish("me", "a", Finish(JobState.FAILED, RESULT, expires_at=clock.now + 60))
    (job,) = store.claim_callbacks("me", 10, lease=30)
    assert job.callback_attempts == 1
    assert job.result is not None
    assert job.result.body == b"done"
    assert store.claim_callbacks("other", 10, lease=30) == []  # leased to me
    store.callback_done("a", CallbackState.PENDING, retry_at=clock.now + 5)
    clock.now += 6
    (job,) = store.claim_callbacks("other", 10, lease=30)
    assert job.callback_attempts == 2
    store.callback_done("a", CallbackState.DELIVERED)
    clock.now += 100
    assert store.claim_callbacks("me", 10, lease=30) == []


def test_purge_deletes_expired_finished_jobs_only(store: JobStore, clock: FakeClock) -> None:
    store.submit(new("a"))
    store.submit(new("b"))
    store.claim("me", {"f": 1}, lease=10)
    store.finish("me", "a", Finish(JobState.SUCCEEDED, RESULT, expires_at=clock.now + 60))
    assert store.purge(clock.now + 59) == 0
    assert store.purge(clock.now + 61) == 1
    assert store.get("a") is None
    assert store.get("b") is not None


def test_find_filters_and_leaves_bodies_out(store: JobStore, clock: FakeClock) -> None:
    for i, function in enumerate(["f", "g", "f"]):
        clock.now += 1
        store.submit(new(f"j{i}", function))
    store.claim("me", {"g": 1}, lease=10)
    assert [j.id for j in store.find()] == ["j2", "j1", "j0"]
    assert [j.id for j in store.find(function="f")] == ["j2", "j0"]
    assert [j.id for j in store.find(state=JobState.RUNNING)] == ["j1"]
    assert [j.id for j in store.find(limit=1)] == ["j2"]
    assert store.find()[0].request.body == b""


def test_sqlite_jobs_survive_reopening(tmp_path: Path, clock: FakeClock) -> None:
    first = SqlJobStore.sqlite(tmp_path / "jobs.db", clock=clock)
    first.submit(new("a"))
    first.close()
    second = SqlJobStore.sqlite(tmp_path / "jobs.db", clock=clock)
    assert [j.id for j in second.claim("me", {"f": 1}, lease=10)] == ["a"]
    second.close()


def test_sqlite_checkpoints_run_in_their_own_thread(tmp_path: Path) -> None:
    store = SqlJobStore.sqlite(tmp_path / "own-thread.db")
    with contextlib.closing(sqlite3.connect(tmp_path / "own-thread.db")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert "checkpoint own-thread.db" in {t.name for t in threading.enumerate()}
    store.close()
    assert "checkpoint own-thread.db" not in {t.name for t in threading.enumerate()}


def test_sqlite_submits_sync_the_wal_and_other_writes_do_not(tmp_path: Path) -> None:
    # A lost claim or finish runs a job again; a lost submit loses an accepted job. So only
    # submits pay for an fsync at commit (synchronous FULL = 2, NORMAL = 1).
    store = SqlJobStore.sqlite(tmp_path / "jobs.db")
    try:
        with store._accepter.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
        with store._writer.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    finally:
        store.close()
