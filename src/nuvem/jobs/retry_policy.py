"""`decide`: how one attempt of an async job ends, from its answer. A pure function.

- Below 400: succeeded; the result is kept for `result_ttl`.
- A status in `retry_on` with attempts left: back to the queue after a back-off
  (exponential in the attempts so far, capped, with jitter).
- A status in `retry_on` after the last attempt: dead letter, kept for triage.
- Any other status: failed, not retried.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from nuvem.backoff import backoff
from nuvem.stack.async_jobs import AsyncJobs
from nuvem.stores.job import Finish, JobResult, JobState


def decide(
    result: JobResult,
    error: str | None,
    attempts: int,
    max_attempts: int,
    settings: AsyncJobs,
    now: float,
    jitter: Callable[[], float] = random.random,
) -> Finish:
    """The end of attempt number `attempts` (of `max_attempts`) that answered `result`;
    `error` is what went wrong when the call itself failed (else the status says it)."""
    status = result.status
    if status < 400:
        return Finish(JobState.SUCCEEDED, result, expires_at=now + settings.result_ttl)
    reason = error or f"status {status}"
    if status not in settings.retry_on:
        return Finish(JobState.FAILED, result, reason, expires_at=now + settings.result_ttl)
    if attempts < max_attempts:
        delay = backoff(attempts, settings.backoff, settings.max_backoff, jitter)
        return Finish(JobState.QUEUED, result, reason, retry_at=now + delay)
    return Finish(
        JobState.DEAD_LETTER,
        result,
        f"{reason} after {attempts} attempts",
        expires_at=now + settings.result_ttl,
    )
