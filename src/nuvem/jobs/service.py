"""`JobService`: what the gateway holds of async jobs: the store, the runner, submit/cancel."""

from __future__ import annotations

import functools
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping

from nuvem.config import Settings
from nuvem.jobs.callback import CALLBACK_TIMEOUT, CallbackSender, HttpCallbackSender
from nuvem.jobs.callback_url import check_callback_url
from nuvem.jobs.runner import JobRunner, JobTarget, RunnerOptions
from nuvem.jobs.store_thread import StoreThread
from nuvem.metrics.registry import Metrics
from nuvem.stack.async_jobs import AsyncJobs
from nuvem.stack.function import FunctionSpec
from nuvem.stores.job import Job, JobRequest, JobState, JobStore, NewJob
from nuvem.stores.job_stores import open_job_store


def job_counts(
    store: JobStore, targets: Callable[[], Mapping[str, JobTarget]]
) -> dict[tuple[str, ...], float]:
    """Jobs by (function, state) for /metrics: every deployed function has every state,
    zeros included, so an alert on dead letters has a series before the first one."""
    found: dict[tuple[str, ...], float] = {
        (name, state.value): 0.0 for name in list(targets()) for state in JobState
    }
    for (function, state), count in store.counts().items():
        found[(function, state.value)] = float(count)
    return found


class JobService:
    def __init__(
        self,
        store: JobStore,
        runner: JobRunner,
        allow_hosts: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.runner = runner
        self.allow_hosts = allow_hosts
        self.clock = clock
        self._targets = runner.targets

    @classmethod
    def create(
        cls,
        settings: Settings,
        targets: Callable[[], Mapping[str, JobTarget]],
        metrics: Metrics,
        *,
        store: JobStore | None = None,
        sender: CallbackSender | None = None,
        options: RunnerOptions | None = None,
    ) -> JobService:
        store = store or open_job_store(settings)
        # Unique per process, so a restarted gateway never mistakes an old lease for its own.
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        options = options or RunnerOptions(
            lease=settings.job_lease, allow_hosts=settings.callback_allow_hosts
        )
        sender = sender or HttpCallbackSender(timeout=min(CALLBACK_TIMEOUT, options.lease * 0.8))
        runner = JobRunner(StoreThread(store), targets, sender, owner, metrics, options)
        metrics.watch_jobs(functools.partial(job_counts, store, targets))
        return cls(store, runner, settings.callback_allow_hosts)

    async def submit(
        self,
        spec: FunctionSpec,
        request: JobRequest,
        callback_url: str | None,
        idempotency_key: str | None,
    ) -> tuple[Job, bool]:
        """Store the job durably (before the client hears 202), then wake the runner."""
        if callback_url is not None:
            check_callback_url(callback_url, self.allow_hosts)
        job, created = await self.runner.io.submit(
            NewJob(
                id=str(uuid.uuid4()),
                function=spec.name,
                request=request,
                max_attempts=spec.jobs.retries + 1,
                callback_url=callback_url,
                idempotency_key=idempotency_key,
            )
        )
        if created:
            self.runner.wake()
        return job, created

    async def cancel(self, job: Job) -> Job | None:
        target = self._targets().get(job.function)
        ttl = (target.spec.jobs if target is not None else AsyncJobs()).result_ttl
        cancelled = await self.runner.io.call(self.store.cancel, job.id, self.clock() + ttl)
        task = self.runner.running.get(job.id)
        if task is not None:  # running here: stop it now rather than at the next renewal
            task.cancel()
        self.runner.wake()
        return cancelled

    async def start(self) -> None:
        self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop()
        await self.runner.io.stop()
        self.store.close()
