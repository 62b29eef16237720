"""`JobRunner` stepped with `tick()` on a fake clock, over the SQLite store and a fake
replica: runs, retries on the clock, dead letters, callbacks and their retries."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nuvem.control.deployment import Deployment
from nuvem.handler import Request, Response
from nuvem.jobs.runner import JobRunner, RunnerOptions
from nuvem.jobs.store_thread import StoreThread
from nuvem.metrics.registry import Metrics
from nuvem.routing.router import Router
from nuvem.runtime.environment import Environment
from nuvem.runtime.fake import FakeRuntime
from nuvem.stack.function import FunctionSpec
from nuvem.stores.job import CallbackState, Job, JobRequest, JobState, NewJob
from nuvem.stores.sql_jobs import SqlJobStore
from support import FakeClock

pytestmark = pytest.mark.anyio

START = 1_000_000.0


class Sender:
    """Callback deliveries, answered from a list of status codes."""

    def __init__(self) -> None:
        self.answers: list[int] = []
        self.sent: list[tuple[str, dict[str, str], bytes]] = []

    async def send(self, url: str, headers: list[tuple[str, str]], body: bytes) -> int:
        self.sent.append((url, dict(headers), body))
        return self.answers.pop(0) if self.answers else 200

    async def close(self) -> None:
        pass


@dataclass
class Parts:
    runner: JobRunner
    clock: FakeClock
    sender: Sender
    statuses: list[int]  # what the function answers, in turn (200 once empty)
    metrics: Metrics

    async def submit(self, job_id: str, callback: str | None = None) -> None:
        request = JobRequest("POST", "/", "", (), job_id.encode())
        await self.runner.io.submit(NewJob(job_id, "f", request, 3, callback_url=callback))

    async def step(self, seconds: float = 0.0) -> None:
        self.clock.now += seconds
        await self.runner.tick()
        await self.runner.settle()

    def job(self, job_id: str) -> Job:
        job = self.runner.io.store.get(job_id)
        assert job is not None
        return job


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    clock = FakeClock(START)
    statuses: list[int] = []

    def answer(request: Request) -> Response:
        return Response(statuses.pop(0) if statuses else 200, b"done " + request.body)

    spec = FunctionSpec.model_validate(
        {"name": "f", "handler": "m:f", "root": "/", "jobs": {"retries": 2, "backoff": "1s"}}
    )
    deployment = Deployment(spec, 1, Router("f", 4, 4))
    env = Environment(key=None, python=Path(sys.executable), path=None)
    deployment.start_requested()
    deployment.started(await FakeRuntime(handler=answer).start(spec, env, "f-1"))
    io = StoreThread(SqlJobStore.sqlite(tmp_path / "jobs.db", clock=clock))
    io.start()
    sender = Sender()
    options = RunnerOptions(lease=15.0, poll_interval=0.5, callback_attempts=3)
    metrics = Metrics()
    targets = {"f": deployment}
    runner = JobRunner(io, lambda: targets, sender, "here", metrics, options, clock=clock)
    yield Parts(runner, clock, sender, statuses, metrics)
    await io.stop()
    io.store.close()


async def test_a_tick_runs_a_queued_job_and_keeps_its_result(parts: Parts) -> None:
    await parts.submit("a")
    await parts.step()
    job = parts.job("a")
    assert job.state is JobState.SUCCEEDED
    assert job.result is not None
    assert job.result.body == b"done a"
    assert job.expires_at == START + 7 * 86400.0


async def test_a_retried_status_waits_out_its_back_off_on_the_clock(parts: Parts) -> None:
    parts.statuses += [503]
    await parts.submit("a")
    await parts.step()
    job = parts.job("a")
    assert (job.state, job.attempts, job.error) == (JobState.QUEUED, 1, "status 503")
    assert START + 0.5 <= job.available_at <= START + 1.0  # the first delay, with jitter
    await parts.step(0.4)  # before the back-off ends: not claimed
    assert parts.job("a").state is JobState.QUEUED
    await parts.step(0.6)
    job = parts.job("a")
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 2)


async def test_the_last_failed_attempt_goes_to_the_dead_letters(parts: Parts) -> None:
    parts.statuses += [503, 502, 504]
    await parts.submit("a")
    for _ in range(3):
        await parts.step(10.0)  # past any back-off (at most 4 s here)
    job = parts.job("a")
    assert (job.state, job.attempts) == (JobState.DEAD_LETTER, 3)
    assert job.error == "status 504 after 3 attempts"


async def test_a_status_that_is_not_retried_fails_at_once(parts: Parts) -> None:
    parts.statuses += [500]
    await parts.submit("a")
    await parts.step()
    job = parts.job("a")
    assert (job.state, job.attempts, job.error) == (JobState.FAILED, 1, "status 500")


async def test_a_finished_job_calls_back_and_retries_the_callback_on_the_clock(
    parts: Parts,
) -> None:
    parts.runner.options = RunnerOptions(
        callback_attempts=3, callback_backoff=2.0, allow_hosts=frozenset({"receiver.test"})
    )
    parts.sender.answers += [500]
    await parts.submit("a", callback="http://receiver.test/done")
    await parts.step()  # runs the job
    await parts.step()  # a job finished here: its callback is looked for at once
    assert len(parts.sender.sent) == 1
    url, headers, body = parts.sender.sent[0]
    assert (url, body) == ("http://receiver.test/done", b"done a")
    assert headers["X-Job-State"] == "succeeded"
    assert headers["X-Function-Status"] == "200"
    assert parts.job("a").callback_state is CallbackState.PENDING
    await parts.step(0.5)  # due again after 1-2 s: not yet
    assert len(parts.sender.sent) == 1
    await parts.step(2.0)
    assert len(parts.sender.sent) == 2
    assert parts.sender.sent[1][1]["X-Retry"] == "1"
    assert parts.job("a").callback_state is CallbackState.DELIVERED


async def test_a_callback_host_that_does_not_resolve_is_retried_and_says_why(
    parts: Parts,
) -> None:
    parts.runner.options = RunnerOptions(callback_attempts=2, callback_backoff=2.0)
    await parts.submit("a", callback="http://no-such-host.invalid/done")
    await parts.step()  # runs the job
    await parts.step()  # the first delivery: the name does not resolve
    first = parts.job("a")
    assert first.callback_state is CallbackState.PENDING
    assert first.callback_error is not None
    assert "'no-such-host.invalid' does not resolve" in first.callback_error
    await parts.step(2.0)  # the second and last
    last = parts.job("a")
    assert (last.callback_state, last.callback_attempts) == (CallbackState.FAILED, 2)
    assert last.callback_error is not None
    assert "does not resolve" in last.callback_error
    assert parts.sender.sent == []


async def test_a_callback_answer_that_fails_is_recorded_until_one_succeeds(parts: Parts) -> None:
    parts.runner.options = RunnerOptions(
        callback_attempts=3, callback_backoff=2.0, allow_hosts=frozenset({"receiver.test"})
    )
    parts.sender.answers += [502]
    await parts.submit("a", callback="http://receiver.test/done")
    await parts.step()
    await parts.step()
    assert parts.job("a").callback_error == "the callback URL answered 502"
    await parts.step(2.0)
    assert parts.job("a").callback_state is CallbackState.DELIVERED
    assert parts.job("a").callback_error is None


async def test_every_attempt_counts_as_an_invocation_with_its_status(parts: Parts) -> None:
    parts.statuses += [503]
    await parts.submit("a")
    await parts.step()
    await parts.step(1.0)  # the retry, after its back-off
    assert parts.job("a").state is JobState.SUCCEEDED
    deployment = parts.runner.targets()["f"]
    assert isinstance(deployment, Deployment)
    assert deployment.invocations == 2
    counted = parts.metrics.invocations
    assert [counted.labels("f", code)._value.get() for code in ("503", "200")] == [1.0, 1.0]
