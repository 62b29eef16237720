"""How a function's async jobs run: concurrency, timeout, retries and how long results stay."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from nuvem.stack.units import parse_duration

# Declared here rather than imported from function.py, which imports this module.
Seconds = Annotated[float, BeforeValidator(parse_duration)]

DEFAULT_RETRY_ON = (429, 502, 503, 504)


class AsyncJobs(BaseModel):
    """The `jobs:` block of a function in the stack file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int = Field(
        default=8,
        ge=1,
        le=10_000,
        description="async jobs of this function running at once, on all gateways together",
    )
    # None: the function's own timeout. A longer one is declared here, on purpose, since it
    # also tells the controller how long a call may run before the replica counts as stuck.
    timeout: Seconds | None = Field(
        default=None,
        gt=0,
        le=7 * 86400,
        description="deadline of one attempt, e.g. 30m or 2h; default: the function's timeout",
    )
    retries: int = Field(default=3, ge=0, le=100, description="attempts after the first")
    retry_on: tuple[int, ...] = Field(
        default=DEFAULT_RETRY_ON, description="status codes that make an attempt retry"
    )
    backoff: Seconds = Field(default=1.0, gt=0, description="first retry delay; doubles per retry")
    max_backoff: Seconds = Field(default=300.0, gt=0, description="longest retry delay")
    result_ttl: Seconds = Field(
        default=7 * 86400.0, gt=0, description="how long a finished job and its result are kept"
    )

    @field_validator("retry_on")
    @classmethod
    def _codes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        bad = [code for code in value if not 100 <= code <= 599]
        if bad:
            raise ValueError(f"retry_on has {bad}, which are not HTTP status codes (100-599)")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> AsyncJobs:
        if self.backoff > self.max_backoff:
            raise ValueError(
                f"backoff ({self.backoff:g}s) is longer than max_backoff "
                f"({self.max_backoff:g}s); set backoff <= max_backoff"
            )
        return self
