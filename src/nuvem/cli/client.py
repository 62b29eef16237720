"""A small HTTP client for a running platform, with errors turned into CLI exits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from nuvem.config import Settings
from nuvem.gateway.auth import ADMIN_PASSWORD_FILE, ADMIN_USER


class ClientError(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


_EXIT_BY_STATUS = {400: 2, 401: 3, 403: 3, 404: 4, 409: 5, 429: 6, 500: 7, 502: 7, 503: 8, 504: 9}


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
            raise ClientError(
                f"cannot reach nuvem at {self.settings.url}; start it with `nuvem up` or set "
                "NUVEM_URL",
                exit_code=11,
            ) from None
        except httpx.TimeoutException:
            raise ClientError(f"nuvem at {self.settings.url} did not answer in time", 9) from None
        if response.status_code == 401 and path.startswith("/system"):
            raise ClientError(
                f"{error_text(response)}; set NUVEM_ADMIN_PASSWORD (or --state-dir to read "
                f"{Path(self.settings.state_dir) / ADMIN_PASSWORD_FILE})",
                exit_code=3,
            )
        return response

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A /system call whose JSON answer is returned; an error answer raises ClientError."""
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ClientError(error_text(response), _EXIT_BY_STATUS.get(response.status_code, 1))
        if not response.content:
            return None
        return response.json()

    def healthy(self) -> bool:
        try:
            return self.http.get("/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False


def exit_code_for(status: int) -> int:
    return _EXIT_BY_STATUS.get(status, 1)
