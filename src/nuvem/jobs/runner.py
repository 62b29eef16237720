"""`JobRunner`: claims async jobs, runs them through the router, retries, calls back.

One step (`tick()`) claims what the per-function concurrency allows, renews the leases of
jobs running here, claims due callbacks and now and then purges expired jobs. The loop
(`start()`) runs a step when woken by a submit, or every `poll_interval`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from nuvem.backoff import backoff
from nuvem.errors import BadRequest, NuvemError
from nuvem.jobs.callback import CallbackSender
from nuvem.jobs.callback_url import check_resolved
from nuvem.jobs.retry_policy import decide
from nuvem.jobs.store_thread import StoreThread
from nuvem.metrics.registry import Metrics
from nuvem.routing import trace_context
from nuvem.routing.invocation import InvocationTarget, invoke
from nuvem.runtime.protocol import CallMeta
from nuvem.stack.function import FunctionSpec
from nuvem.stores.job import CallbackState, Finish, Job, JobResult, JobState

log = logging.getLogger(__name__)


class JobTarget(InvocationTarget, Protocol):
    @property
    def spec(self) -> FunctionSpec: ...


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    lease: float = 15.0  # a crashed gateway's jobs run again this long after its last renewal
    poll_interval: float = 0.5
    callback_attempts: int = 8
    callback_backoff: float = 1.0
    callback_max_backoff: float = 300.0
    callback_concurrency: int = 32
    purge_interval: float = 60.0
    allow_hosts: frozenset[str] = field(default_factory=frozenset)


class JobRunner:
    def __init__(
        self,
        io: StoreThread,
        targets: Callable[[], Mapping[str, JobTarget]],
        sender: CallbackSender,
        owner: str,
        metrics: Metrics,
        options: RunnerOptions | None = None,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.io = io  # the store, called off the event loop
        self.targets = targets
        self.sender = sender
        self.owner = owner
        self.metrics = metrics  # job calls count in the invocation metrics like /function's
        self.options = options or RunnerOptions()
        self.clock = clock  # wall time: what the store keeps (retry times, expiry)
        # Monotonic time for call deadlines and durations: the clock the routers keep.
        self.timer = timer
        self.running: dict[str, asyncio.Task[None]] = {}  # job id -> its task here
        self._by_function: dict[str, int] = {}
        self._callbacks: set[asyncio.Task[None]] = set()
        self._renewed_at = 0.0
        self._purged_at = 0.0
        self._callbacks_at = 0.0
        self._finished_here = False
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.io.start()
        self._loop_task = asyncio.create_task(self._run(), name="job-runner")

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.tick()
            except Exception:  # a store hiccup (database restarting) must not end the loop
                log.exception("job runner step failed; trying again")
            try:
                async with asyncio.timeout(self.options.poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; give running jobs `grace` seconds, then hand the rest back."""
        self._stopping = True
        if self._loop_task is not None:
            self.wake()
            await self._loop_task
        tasks = list(self.running.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for task in self.running.values():
            task.cancel()
        # Back to the queue at once rather than after the lease: a restart picks them up.
        back = Finish(JobState.QUEUED)
        await asyncio.gather(
            *(self.io.finish(self.owner, job_id, back) for job_id in self.running),
            return_exceptions=True,
        )
        await asyncio.gather(*self.running.values(), *self._callbacks, return_exceptions=True)
        for task in list(self._callbacks):
            task.cancel()
        await self.sender.close()

    async def settle(self) -> None:
        """Wait until the jobs and callback deliveries under way here have finished (tests
        step the runner with `tick()` and this)."""
        while self.running or self._callbacks:
            await asyncio.gather(*self.running.values(), *self._callbacks, return_exceptions=True)

    # -- one step --------------------------------------------------------------------------

    async def tick(self) -> None:
        now = self.clock()
        await self._claim_jobs()
        if now - self._renewed_at >= self.options.lease / 3:
            self._renewed_at = now
            await self._renew()
        # Callbacks are looked for when a job finished here, and every poll interval for
        # retries and other gateways' jobs: not on every submit's wake-up.
        if self._finished_here or now - self._callbacks_at >= self.options.poll_interval:
            self._finished_here = False
            self._callbacks_at = now
            await self._claim_callbacks()
        if now - self._purged_at >= self.options.purge_interval:
            self._purged_at = now
            purged = await self.io.call(self.io.store.purge, now)
            if purged:
                log.info("purged %d expired jobs", purged)

    async def _claim_jobs(self) -> None:
        capacity: dict[str, int] = {}
        for name, target in self.targets().items():
            if target.unavailable_reason() is not None:
                continue  # its jobs wait, queued, until it can run them
            limit = target.spec.jobs.concurrency
            if self._by_function.get(name, 0) < limit:  # else full here, so full everywhere
                # The limit holds for all gateways together: the store counts theirs too.
                capacity[name] = limit
        if not capacity or self._stopping:
            return
        claimed = await self.io.call(self.io.store.claim, self.owner, capacity, self.options.lease)
        for job in claimed:
            self._by_function[job.function] = self._by_function.get(job.function, 0) + 1
            task = asyncio.create_task(self._execute(job), name=f"job-{job.id}")
            self.running[job.id] = task
            task.add_done_callback(functools.partial(self._forget, job))

    def _forget(self, job: Job, _task: object = None) -> None:
        self.running.pop(job.id, None)
        self._by_function[job.function] = self._by_function.get(job.function, 1) - 1
        self.wake()  # a slot is free

    async def _renew(self) -> None:
        held = list(self.running)
        lost = await self.io.call(self.io.store.renew, self.owner, held, self.options.lease)
        for job_id in lost:
            task = self.running.get(job_id)
            if task is not None:
                log.info("job %s was cancelled or its lease lost; stopping it here", job_id)
                task.cancel()

    async def _claim_callbacks(self) -> None:
        free = self.options.callback_concurrency - len(self._callbacks)
        if free <= 0 or self._stopping:
            return
        # The lease outlives one delivery attempt (the sender's timeout is shorter), so only
        # one gateway sends at a time; a crashed gateway's deliveries resume after it.
        lease = self.options.lease
        for job in await self.io.call(self.io.store.claim_callbacks, self.owner, free, lease):
            task = asyncio.create_task(self._deliver(job), name=f"callback-{job.id}")
            self._callbacks.add(task)
            task.add_done_callback(self._callbacks.discard)

    # -- one job ---------------------------------------------------------------------------

    async def _execute(self, job: Job) -> None:
        target = self.targets().get(job.function)
        if target is None:  # removed since the claim: leave the job for when it is back
            await self.io.finish(self.owner, job.id, Finish(JobState.QUEUED))
            return
        settings = target.spec.jobs
        headers = [(k, v) for k, v in job.request.headers if k != "x-call-id"]
        headers.append(("x-call-id", job.id))
        # Each attempt is a span of its own in the trace the job was submitted in.
        headers = trace_context.replaced(headers, _job_trace(job).child())
        meta = CallMeta(job.request.method, job.request.path, job.request.query, headers)
        began = self.timer()
        error = None
        try:
            status, raw_headers, body = await invoke(
                target,
                meta,
                job.request.body,
                self.metrics,
                clock=self.timer,
                deadline=began + (settings.timeout or target.timeout),
            )
            answer_headers = tuple(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers
            )
        except NuvemError as exc:
            status, error = exc.status, str(exc)
            answer_headers = (("content-type", "application/json"),)
            body = json.dumps(exc.payload()).encode()
        result = JobResult(status, answer_headers, body, self.timer() - began)
        finish = decide(result, error, job.attempts, job.max_attempts, settings, self.clock())
        if not await self.io.finish(self.owner, job.id, finish):
            log.info("job %s ended here after its lease was lost; result dropped", job.id)
        self._finished_here = True
        self.wake()

    async def _deliver(self, job: Job) -> None:
        url = job.callback_url
        if url is None:
            return
        result = job.result
        status = result.status if result is not None else 500
        headers = [
            ("X-Call-Id", job.id),
            ("X-Function-Name", job.function),
            ("X-Function-Status", str(status)),
            ("X-Duration-Seconds", f"{result.duration if result else 0.0:.6f}"),
            ("X-Job-State", job.state.value),
            ("X-Job-Attempts", str(job.attempts)),
            ("X-Retry", str(job.callback_attempts - 1)),
            ("X-Retry-Max", str(self.options.callback_attempts - 1)),
        ]
        if result is not None:
            headers += [(k, v) for k, v in result.headers if k.lower() == "content-type"]
        headers += _job_trace(job).child().headers()  # the delivery is a span of the job's trace
        body = result.body if result is not None else b""
        try:
            await check_resolved(url, self.options.allow_hosts)
            answer = await self.sender.send(url, headers, body)
        except BadRequest as exc:
            log.warning("callback of job %s not sent: %s", job.id, exc)
            await self._callback_done(job.id, CallbackState.FAILED, error=f"not sent: {exc}")
            return
        except Exception as exc:  # unresolved, down or slow: retried below
            answer = 0
            failure = str(exc) or type(exc).__name__
            log.info("callback of job %s to %s failed: %s", job.id, url, failure)
        else:
            failure = f"the callback URL answered {answer}"
        if 200 <= answer < 400:
            await self._callback_done(job.id, CallbackState.DELIVERED)
        elif job.callback_attempts >= self.options.callback_attempts:
            log.warning(
                "callback of job %s to %s failed %d times; giving up",
                job.id,
                url,
                job.callback_attempts,
            )
            await self._callback_done(job.id, CallbackState.FAILED, error=failure)
        else:
            delay = backoff(
                job.callback_attempts,
                self.options.callback_backoff,
                self.options.callback_max_backoff,
                random.random,
            )
            await self._callback_done(
                job.id, CallbackState.PENDING, self.clock() + delay, error=failure
            )

    async def _callback_done(
        self, job_id: str, state: CallbackState, retry_at: float = 0, error: str | None = None
    ) -> None:
        await self.io.call(self.io.store.callback_done, job_id, state, retry_at, error)


def _job_trace(job: Job) -> trace_context.TraceContext:
    """The trace the job was submitted in; a new one for a job stored without any."""
    found = trace_context.stored(job.request.headers)
    return found if found is not None else trace_context.from_headers(None)[0]
