"""`/system/jobs`: status, result, listing and cancelling of async jobs.

Readable by the admin and by API keys allowed to invoke the job's function, so the client
that submitted a job can collect it without admin rights.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from nuvem.errors import Conflict, NotFound
from nuvem.gateway.services import Services
from nuvem.gateway.ui.session import signed_in
from nuvem.jobs.service import JobService
from nuvem.routing import trace_context
from nuvem.stores.job import Job, JobState

router = APIRouter(prefix="/system/jobs", tags=["jobs"])


class JobInfo(BaseModel):
    id: str
    function: str
    state: str
    attempts: int
    max_attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    expires_at: float | None
    status: int | None  # the function's status code, once an attempt answered
    duration: float | None
    error: str | None
    callback_url: str | None
    callback_state: str
    callback_attempts: int
    callback_error: str | None
    # The W3C trace the job was submitted in: its attempts and callback are spans of it.
    trace_id: str | None = None
    traceparent: str | None = None

    @classmethod
    def of(cls, job: Job) -> JobInfo:
        trace = trace_context.stored(job.request.headers)
        return cls(
            id=job.id,
            function=job.function,
            state=job.state.value,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            expires_at=job.expires_at,
            status=job.result.status if job.result else None,
            duration=job.result.duration if job.result else None,
            error=job.error,
            callback_url=job.callback_url,
            callback_state=job.callback_state.value,
            callback_attempts=job.callback_attempts,
            callback_error=job.callback_error,
            trace_id=trace.trace_id if trace else None,
            traceparent=trace.traceparent() if trace else None,
        )


def _service(request: Request) -> tuple[Services, JobService]:
    platform: Services = request.app.state.platform
    return platform, platform.jobs


def _allow(request: Request, platform: Services, function: str) -> None:
    if signed_in(request) is not None:
        return
    platform.auth.check_invoke(
        request.headers.get("authorization"), request.headers.get("x-api-key"), function
    )


def _job(request: Request, job_id: str, *, with_body: bool = False) -> Job:
    platform, jobs = _service(request)
    job = jobs.store.get(job_id, with_body=with_body)
    if job is None:
        raise NotFound(
            f"job {job_id!r} not found",
            "check the X-Call-Id the submit answered; finished jobs expire after result_ttl",
        )
    _allow(request, platform, job.function)
    return job


@router.get("", response_model=list[JobInfo])
def list_jobs(
    request: Request,
    function: str | None = None,
    state: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[JobInfo]:
    """Newest first. API keys must name a function they may invoke; the admin may omit it."""
    platform, jobs = _service(request)
    if function is not None:
        _allow(request, platform, function)
    elif signed_in(request) is None:
        platform.auth.check_admin(request.headers.get("authorization"))
    return [JobInfo.of(job) for job in jobs.store.find(function, state, limit)]


@router.get("/{job_id}", response_model=JobInfo)
def job_status(request: Request, job_id: str) -> JobInfo:
    return JobInfo.of(_job(request, job_id))


@router.get(
    "/{job_id}/result",
    response_class=Response,
    responses={
        200: {"description": "the function's answer: its body, headers and status code"},
        # The job's own answer keeps the handler's status: a 400 or 500 here is the job's
        # (X-Function-Status says the same), not a refusal of this request.
        "2XX": {"description": "the function's answer, with the status it chose"},
        "4XX": {"description": "the function refused the job: its answer, with its status"},
        "5XX": {"description": "the function failed the job: its answer, with its status"},
        409: {
            "description": "the job has no result: not yet (with Retry-After), or never "
            "(a final state, in X-Job-State)"
        },
    },
)
def job_result(request: Request, job_id: str) -> Response:
    """The function's answer as it gave it, with X-Function-Status and X-Job-State."""
    job = _job(request, job_id, with_body=True)
    if job.result is None or not job.state.finished:
        return _no_result(job)
    headers: dict[str, Any] = {
        k: v for k, v in job.result.headers if k.lower() not in ("content-length",)
    }
    headers |= {
        "X-Call-Id": job.id,
        "X-Function-Status": str(job.result.status),
        "X-Job-State": job.state.value,
        "X-Duration-Seconds": f"{job.result.duration:.6f}",
    }
    return Response(content=job.result.body, status_code=job.result.status, headers=headers)


def _no_result(job: Job) -> Response:
    """409 for a job without a result; Retry-After only while one may still come."""
    headers = {"X-Job-State": job.state.value}
    if not job.state.finished:
        message = (
            f"job {job.id} is {job.state.value} and has no result yet (poll GET "
            "/system/jobs/{id}, or pass X-Callback-Url when submitting)"
        )
        headers["Retry-After"] = "1"
    else:
        why = f" ({job.error})" if job.error else ""
        message = (
            f"job {job.id} is {job.state.value}{why} after {job.attempts} attempt(s) and "
            "has no result; it will not run again (submit it anew)"
        )
    return Response(
        content=json.dumps({"error": message}),
        status_code=409,
        media_type="application/json",
        headers=headers,
    )


@router.post("/{job_id}/cancel", response_model=JobInfo)
async def cancel_job(request: Request, job_id: str) -> JobInfo:
    """Cancel a queued or running job; 409 when it has already finished."""
    # Async, unlike the reads: the cancel is written by the store's thread and stops a job
    # running here on the event loop. The look-up is a read, done off the loop.
    job = await run_in_threadpool(_job, request, job_id)
    if job.state.finished:
        raise Conflict(
            f"job {job.id} is already {job.state.value}; there is nothing to cancel",
            f"collect its result with GET /system/jobs/{job.id}/result",
        )
    _, jobs = _service(request)
    cancelled = await jobs.cancel(job)
    return JobInfo.of(cancelled or job)


@router.post("/{job_id}/retry", status_code=202, response_model=JobInfo)
async def retry_job(request: Request, job_id: str) -> JobInfo:
    """Submit a failed, dead-lettered or cancelled job's request again, as a new job (its
    id is in the answer); the old one stays for triage. Admin only."""
    platform, jobs = _service(request)
    if signed_in(request) is None:
        platform.auth.check_admin(request.headers.get("authorization"))
    job = await run_in_threadpool(_job, request, job_id, with_body=True)
    if job.state not in (JobState.FAILED, JobState.DEAD_LETTER, JobState.CANCELLED):
        raise Conflict(
            f"job {job.id} is {job.state.value}; only failed, dead-lettered or cancelled jobs "
            "are submitted again",
            "wait for it to finish, or cancel it first",
        )
    spec = platform.controller.get(job.function).spec
    retried, _ = await jobs.submit(spec, job.request, job.callback_url, None)
    return JobInfo.of(retried)


@router.delete("/{job_id}", response_model=JobInfo)
async def delete_job(request: Request, job_id: str) -> JobInfo:
    """The same as cancel (kept for clients that cancel with DELETE)."""
    return await cancel_job(request, job_id)
