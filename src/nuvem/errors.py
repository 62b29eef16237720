"""One exception tree. Each error knows its HTTP status and CLI exit code, and reads like help:
what went wrong, the offending value, and a hint for the fix."""

from __future__ import annotations


class NuvemError(Exception):
    status: int = 500
    exit_code: int = 1
    retry_after: float | None = None  # seconds; answered as Retry-After when set

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def payload(self) -> dict[str, str]:
        return {"error": str(self)}


class BadRequest(NuvemError):
    status = 400
    exit_code = 2


class SpecError(BadRequest):
    """A stack file or function spec is invalid."""


class Unauthorized(NuvemError):
    status = 401
    exit_code = 3


class Forbidden(NuvemError):
    status = 403
    exit_code = 3


class NotFound(NuvemError):
    status = 404
    exit_code = 4


class Conflict(NuvemError):
    status = 409
    exit_code = 5


class MethodNotAllowed(NuvemError):
    """The path exists, but not with this method; `allow` lists the methods it takes."""

    status = 405
    exit_code = 2

    def __init__(self, message: str, hint: str = "", allow: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint)
        self.allow = allow


class PayloadTooLarge(NuvemError):
    status = 413
    exit_code = 2


class RequestTimeout(NuvemError):
    """The client stopped sending its request (NUVEM_READ_TIMEOUT)."""

    status = 408
    exit_code = 9


class UriTooLong(BadRequest):
    status = 414


class HeadersTooLarge(BadRequest):
    status = 431


class Overloaded(NuvemError):
    """The function's queue is full; the client should retry after `retry_after` seconds."""

    status = 429
    exit_code = 6

    def __init__(self, message: str, hint: str = "", retry_after: float = 1.0) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after


class FunctionFailed(NuvemError):
    """The user's handler raised; the replica lives on."""

    status = 500
    exit_code = 7


class ReplicaDied(NuvemError):
    """The replica serving a call exited before answering."""

    status = 502
    exit_code = 7


class Unavailable(NuvemError):
    """No replica can serve the function (its setup failed, or it has none)."""

    status = 503
    exit_code = 8


class StoreUnreachable(NuvemError):
    """A server the platform keeps its records in (PostgreSQL) does not answer."""

    status = 503
    exit_code = 8
    retry_after = 1.0


class DeadlineExceeded(NuvemError):
    status = 504
    exit_code = 9


class EnvironmentBuildError(NuvemError):
    """Installing a function's requirements failed."""

    status = 500
    exit_code = 10


class RequirementsUnresolvable(EnvironmentBuildError):
    """The requirements can never install as written (a name or version the index does not
    have): retrying cannot help until the function's spec changes."""


class ImageBuildFailed(EnvironmentBuildError):
    """Building a function's image from its Containerfile failed: the same source fails
    again, so retrying waits until the function's spec (its source) changes."""


class ModelError(NuvemError):
    """A model's weights cannot be fetched or read, or do not fit its architecture or labels."""

    status = 500
    exit_code = 11


class Unreachable(NuvemError):
    """The CLI cannot connect to the platform it drives."""

    status = 503
    exit_code = 11


class LifecycleError(NuvemError):
    """The platform's process did not start or stop as the CLI asked."""

    status = 500
    exit_code = 12


class ClusterError(NuvemError):
    """The Ray cluster cannot be started, joined or reached."""

    status = 503
    exit_code = 13


class ClusterTokenError(ClusterError):
    """The cluster token is missing, unreadable or unsafe, or the head refused it."""

    status = 401
    exit_code = 3


# The error a status code stands for, where a client reads one from an answer.
_BY_STATUS: dict[int, type[NuvemError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        RequestTimeout,
        PayloadTooLarge,
        UriTooLong,
        HeadersTooLarge,
        Overloaded,
        FunctionFailed,
        ReplicaDied,
        Unavailable,
        DeadlineExceeded,
    )
}


def error_for_status(status: int, message: str, hint: str = "") -> NuvemError:
    """The NuvemError an HTTP answer with `status` stands for (exit code 1 when none does)."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls(message, hint)
    error = NuvemError(message, hint)
    error.status = status
    return error
