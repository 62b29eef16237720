"""An async job as stored: its states, its record, and the `JobStore` seam that keeps it.

A store is both the queue and the record of jobs. Delivery is at least once: a worker
claims a job under a lease that it renews while the job runs; a lease that expires (its
gateway crashed) makes the job claimable again, and `attempts` counts every claim.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class JobState(enum.Enum):
    QUEUED = "queued"  # accepted and durable; waits for a free slot or its retry time
    RUNNING = "running"  # claimed by one gateway under a lease; an expired lease requeues it
    SUCCEEDED = "succeeded"  # the function answered below 400; the result is kept until expiry
    FAILED = "failed"  # the function answered with a status that is not retried
    CANCELLED = "cancelled"  # a client cancelled it before it finished; it will not run again
    DEAD_LETTER = "dead_letter"  # every attempt failed with a retried status; kept for triage

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


class CallbackState(enum.Enum):
    NONE = "none"  # the job has no callback URL
    WAITING = "waiting"  # the job has not finished yet
    PENDING = "pending"  # the job finished; the callback is due (or due again after a failure)
    DELIVERED = "delivered"  # the callback URL answered below 300
    FAILED = "failed"  # every delivery attempt failed; the result is still kept


@dataclass(frozen=True, slots=True)
class JobRequest:
    """What the client sent, as the replica will see it."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class JobResult:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    duration: float  # seconds the last attempt took


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    function: str
    state: JobState
    request: JobRequest
    attempts: int  # claims so far: the first run and every retry or reclaim after a crash
    max_attempts: int
    created_at: float
    updated_at: float
    available_at: float  # a queued job is not claimed before this time (retry back-off)
    callback_url: str | None = None
    callback_state: CallbackState = CallbackState.NONE
    callback_attempts: int = 0
    callback_error: str | None = None  # why the last delivery failed, when it did
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None  # a finished job is deleted after this time
    result: JobResult | None = None
    error: str | None = None  # why the last attempt failed, when it did
    owner: str | None = None  # the gateway holding the lease while running


@dataclass(frozen=True, slots=True)
class NewJob:
    id: str
    function: str
    request: JobRequest
    max_attempts: int
    callback_url: str | None = None
    idempotency_key: str | None = None  # scoped by the caller's identity, see gateway


@dataclass(frozen=True, slots=True)
class Finish:
    """How an attempt ended: a final state, or back to the queue at `retry_at`."""

    state: JobState
    result: JobResult | None = None
    error: str | None = None
    retry_at: float | None = None  # with state QUEUED: when to try again
    expires_at: float | None = None  # with a final state: when the record may go


class JobStore(Protocol):
    def submit(self, job: NewJob) -> tuple[Job, bool]:
        """Store a queued job; with an idempotency key already used, the existing job and
        False."""
        ...

    def submit_many(self, new: Sequence[NewJob]) -> list[tuple[Job, bool]]:
        """`submit` for each, in order, with the jobs that have no idempotency key written
        in one transaction (one commit for many accepts: see jobs/store_thread.py)."""
        ...

    def get(self, job_id: str, *, with_body: bool = True) -> Job | None: ...
    def find(
        self, function: str | None = None, state: JobState | None = None, limit: int = 100
    ) -> list[Job]:
        """Newest first, without request or result bodies."""
        ...

    def counts(self) -> dict[tuple[str, JobState], int]:
        """How many jobs each (function, state) has, over every gateway (for /metrics)."""
        ...

    def cancel(self, job_id: str, expires_at: float) -> Job | None:
        """Cancel a queued or running job; a finished job is returned unchanged."""
        ...

    def claim(self, owner: str, capacity: dict[str, int], lease: float) -> list[Job]:
        """Due jobs, now RUNNING under owner's lease: of each function, as many as keep no
        more than capacity[function] of its jobs running on all gateways together."""
        ...

    def renew(self, owner: str, job_ids: list[str], lease: float) -> set[str]:
        """Extend the leases still held; returns the ids whose lease is lost (or cancelled)."""
        ...

    def finish(self, owner: str, job_id: str, finish: Finish) -> bool:
        """Record an attempt's end; False when owner no longer holds the job."""
        ...

    def finish_many(self, owner: str, ends: Sequence[tuple[str, Finish]]) -> list[bool]:
        """`finish` for each (job id, how it ended), in one transaction."""
        ...

    def claim_callbacks(self, owner: str, limit: int, lease: float) -> list[Job]:
        """Finished jobs whose callback is due, leased to owner for one delivery attempt."""
        ...

    def callback_done(
        self, job_id: str, state: CallbackState, retry_at: float = 0.0, error: str | None = None
    ) -> None:
        """DELIVERED or FAILED, or PENDING again from retry_at; `error` says why the
        delivery failed (None after one that succeeded)."""
        ...

    def purge(self, now: float) -> int:
        """Delete finished jobs past their expiry; returns how many."""
        ...

    def close(self) -> None: ...
