"""CLI commands about async jobs: submit, status, result, ls, cancel."""

from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from nuvem.cli.client import Client, response_error
from nuvem.cli.context import print_json, settings_for
from nuvem.cli.fitted_table import Column, show
from nuvem.errors import BadRequest, DeadlineExceeded, FunctionFailed

out = Console()
err = Console(stderr=True)
POLL_SECONDS = 0.5


def _client(state_dir: Path | None) -> tuple[Client, dict[str, str]]:
    """A client, and the headers that carry NUVEM_API_KEY when it is set."""
    settings = settings_for(state_dir)
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    return Client(settings), headers


def submit(
    name: str,
    data: str | None,
    path: str,
    method: str,
    headers: list[str],
    callback_url: str | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float,
    state_dir: Path | None,
) -> None:
    if data is None or data == "-":
        body = b"" if sys.stdin.isatty() and data is None else sys.stdin.buffer.read()
    else:
        body = data.encode()
    client, sent = _client(state_dir)
    for line in headers:
        key, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(f"header {line!r} is not 'Name: value'")
        sent[key.strip()] = value.strip()
    if callback_url:
        sent["X-Callback-Url"] = callback_url
    if idempotency_key:
        sent["Idempotency-Key"] = idempotency_key
    with client:
        target = f"/async-function/{name}" + (f"/{path.lstrip('/')}" if path else "")
        response = client.request(method.upper(), target, content=body, headers=sent)
        if response.status_code != 202:
            raise response_error(response)
        job_id = response.headers["x-call-id"]
        if not wait:
            sys.stdout.write(job_id + "\n")  # alone on stdout: JOB=$(nuvem jobs submit ...)
            return
        err.print(f"submitted job {job_id}", highlight=False)
        _write_result(client, sent, job_id, timeout)


def status(job_id: str, as_json: bool, state_dir: Path | None) -> None:
    client, headers = _client(state_dir)
    with client:
        found = client.call("GET", f"/system/jobs/{job_id}", headers=headers)
    if as_json:
        print_json(found)
        return
    keys = ("id", "function", "state", "attempts", "status", "duration", "error", "trace_id")
    for key in keys:
        if found.get(key) is not None:
            out.print(f"[bold]{key}[/bold]: {found[key]}", highlight=False)
    if found.get("callback_url"):
        out.print(
            f"[bold]callback[/bold]: {found['callback_state']} "
            f"({found['callback_attempts']} attempts) {found['callback_url']}",
            highlight=False,
        )
    if found.get("callback_error"):
        out.print(f"[bold]callback error[/bold]: {found['callback_error']}", highlight=False)


def result(job_id: str, wait: bool, timeout: float, state_dir: Path | None) -> None:
    client, headers = _client(state_dir)
    with client:
        if wait:
            _write_result(client, headers, job_id, timeout)
            return
        response = client.request("GET", f"/system/jobs/{job_id}/result", headers=headers)
        _emit(response)


def _write_result(client: Client, headers: dict[str, str], job_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        response = client.request("GET", f"/system/jobs/{job_id}/result", headers=headers)
        # Without Retry-After a 409 means the job ended without a result: waiting is no use.
        if response.status_code != 409 or "retry-after" not in response.headers:
            _emit(response)
            return
        if time.monotonic() > deadline:
            raise DeadlineExceeded(
                f"job {job_id} is still {response.headers.get('x-job-state', 'unfinished')} "
                f"after {timeout:g}s; collect it later with `nuvem jobs result {job_id}`"
            )
        time.sleep(POLL_SECONDS)  # polling the gateway: the CLI has nothing else to do


def _emit(response: Any) -> None:
    function_status = response.headers.get("x-function-status")
    if function_status is None:  # an error of the gateway, not an answer of the function
        raise response_error(response)
    sys.stdout.buffer.write(response.content)
    if response.content and not response.content.endswith(b"\n") and sys.stdout.isatty():
        sys.stdout.write("\n")
    sys.stdout.flush()
    if int(function_status) >= 400:
        state = response.headers.get("x-job-state", "failed")
        err.print(f"[red]job {state}[/red] with status {function_status}", highlight=False)
        raise FunctionFailed(f"the function answered {function_status}")


JOB_COLUMNS = (
    Column("ID"),  # whole, so it can be copied
    Column("FUNCTION"),
    Column("STATE"),
    Column("ATTEMPTS", drop=2, justify="right"),
    Column("STATUS", drop=3, justify="right"),
    Column("CREATED", drop=1),
    Column("CALLBACK", drop=4),
)


def show_list(
    function: str | None,
    state: str | None,
    limit: int,
    as_json: bool,
    wide: bool,
    state_dir: Path | None,
) -> None:
    client, headers = _client(state_dir)
    params: dict[str, Any] = {"limit": limit}
    if function:
        params["function"] = function
    if state:
        params["state"] = state
    with client:
        found = client.call("GET", "/system/jobs", params=params, headers=headers)
    if as_json:
        print_json(found)
        return
    rows = [
        (
            job["id"],
            job["function"],
            job["state"],
            str(job["attempts"]),
            str(job["status"] or ""),
            datetime.datetime.fromtimestamp(job["created_at"]).strftime("%m-%d %H:%M:%S"),
            job["callback_state"] if job["callback_url"] else "",
        )
        for job in found
    ]
    show(out, JOB_COLUMNS, rows, wide=wide)


def cancel(job_id: str, state_dir: Path | None) -> None:
    client, headers = _client(state_dir)
    with client:
        found = client.call("POST", f"/system/jobs/{job_id}/cancel", headers=headers)
    err.print(f"job {job_id} is {found['state']}")
