"""How an attempt of an async job ends: a table of cases, and invariants under Hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nuvem.jobs.retry_policy import decide
from nuvem.stack.async_jobs import AsyncJobs
from nuvem.stores.job import JobResult, JobState

SETTINGS = AsyncJobs(retries=2, backoff=1.0, max_backoff=10.0, result_ttl=100.0)
NOW = 1000.0


def result(status: int) -> JobResult:
    return JobResult(status, (), b"", 0.1)


@pytest.mark.parametrize(
    ("status", "error", "attempts", "state", "message"),
    [
        (200, None, 1, JobState.SUCCEEDED, None),
        (302, None, 3, JobState.SUCCEEDED, None),
        (503, "no replica", 1, JobState.QUEUED, "no replica"),
        (502, None, 2, JobState.QUEUED, "status 502"),
        (503, "no replica", 3, JobState.DEAD_LETTER, "no replica after 3 attempts"),
        (429, None, 3, JobState.DEAD_LETTER, "status 429 after 3 attempts"),
        (500, "boom", 1, JobState.FAILED, "boom"),
        (400, None, 1, JobState.FAILED, "status 400"),
    ],
)
def test_each_outcome(
    status: int, error: str | None, attempts: int, state: JobState, message: str | None
) -> None:
    finish = decide(result(status), error, attempts, 3, SETTINGS, NOW, lambda: 1.0)
    assert finish.state is state
    assert finish.error == message
    assert finish.result == result(status)
    if state is JobState.QUEUED:
        assert finish.retry_at == NOW + 2.0 ** (attempts - 1)
        assert finish.expires_at is None
    else:
        assert finish.retry_at is None
        assert finish.expires_at == NOW + 100.0


@given(
    status=st.integers(100, 599),
    attempts=st.integers(1, 20),
    max_attempts=st.integers(1, 20),
    rand=st.floats(0, 1),
)
def test_retries_only_retried_statuses_while_attempts_remain(
    status: int, attempts: int, max_attempts: int, rand: float
) -> None:
    finish = decide(result(status), None, attempts, max_attempts, SETTINGS, NOW, lambda: rand)
    retried = status in SETTINGS.retry_on
    if status < 400:
        assert finish.state is JobState.SUCCEEDED
    elif retried and attempts < max_attempts:
        assert finish.state is JobState.QUEUED
        assert finish.retry_at is not None
        assert NOW + 0.5 <= finish.retry_at <= NOW + SETTINGS.max_backoff
    else:
        assert finish.state is (JobState.DEAD_LETTER if retried else JobState.FAILED)
    assert finish.state.finished == (finish.state is not JobState.QUEUED)
