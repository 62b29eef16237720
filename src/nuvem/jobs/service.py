"""`JobService`: what the gateway holds of async jobs: the store, the runner, submit/cancel."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping

from nuvem.config import Settings
from nuvem.jobs.callback import CALLBACK_TIMEOUT, CallbackSender, HttpCallbackSender
from nuvem.jobs.callback_url import check_callback_url
from nuvem.jobs.runner import JobRunner, JobTarget, RunnerOptions
from nuvem.spec.function import FunctionSpec
from nuvem.spec.jobs import AsyncJobs
from nuvem.stores.job import Job, JobRequest, JobStore, NewJob
from nuvem.stores.job_stores import open_job_store


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
        runner = JobRunner(store, targets, sender, owner, options)
        return cls(store, runner, settings.callback_allow_hosts)

    def submit(
        self,
        spec: FunctionSpec,
        request: JobRequest,
        callback_url: str | None,
        idempotency_key: str | None,
    ) -> tuple[Job, bool]:
        """Store the job durably (before the client hears 202), then wake the runner."""
        if callback_url is not None:
            check_callback_url(callback_url, self.allow_hosts)
        job, created = self.store.submit(
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

    def cancel(self, job_id: str) -> Job | None:
        found = self.store.get(job_id, with_body=False)
        if found is None:
            return None
        target = self._targets().get(found.function)
        ttl = (target.spec.jobs if target is not None else AsyncJobs()).result_ttl
        job = self.store.cancel(job_id, self.clock() + ttl)
        self.runner.wake()  # its lease renewal stops the running task at the next step
        return job

    async def start(self) -> None:
        self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop()
        self.store.close()
