"""A small HTTP client for a running platform. Error answers become the NuvemError their
status stands for (errors.py), whose exit code the CLI exits with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from nuvem.config import Settings
from nuvem.errors import DeadlineExceeded, NuvemError, Unauthorized, Unreachable, error_for_status
from nuvem.gateway.auth import ADMIN_PASSWORD_FILE, ADMIN_USER


def admin_password(settings: Settings) -> str | None:
    if settings.admin_password:
        return settings.admin_password
    path = settings.state_dir / ADMIN_PASSWORD_FILE
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and "error" in body:
            return str(body["error"])
    except ValueError:
        pass
    return response.text.strip() or response.reason_phrase


def response_error(response: httpx.Response, context: str = "") -> NuvemError:
    """The error an error answer stands for, its text prefixed with `context`."""
    return error_for_status(response.status_code, context + error_text(response))


class Client:
    def __init__(self, settings: Settings, timeout: float | None = 60.0) -> None:
        self.settings = settings
        password = admin_password(settings)
        auth = httpx.BasicAuth(ADMIN_USER, password) if password else None
        self.http = httpx.Client(base_url=settings.url, auth=auth, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise Unreachable(
                f"cannot reach nuvem at {self.settings.url}; start it with `nuvem up` or set "
                "NUVEM_URL"
            ) from None
        except httpx.TimeoutException:
            raise DeadlineExceeded(f"nuvem at {self.settings.url} did not answer in time") from None
        if response.status_code == 401 and path.startswith("/system"):
            raise Unauthorized(
                f"{error_text(response)}; set NUVEM_ADMIN_PASSWORD (or --state-dir to read "
                f"{Path(self.settings.state_dir) / ADMIN_PASSWORD_FILE})"
            )
        return response

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A /system call whose JSON answer is returned; an error answer raises its error."""
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise response_error(response)
        if not response.content:
            return None
        return response.json()

    def healthy(self) -> bool:
        try:
            return self.http.get("/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False
