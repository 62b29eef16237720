"""The `stores:` block of a stack file: where the job queue and the records live."""

from __future__ import annotations

import dataclasses

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nuvem.config import Settings
from nuvem.stack.redis_url import RedisUrl

_RECORDS = ("postgresql://", "postgresql+psycopg://", "postgres://")


class Stores(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: str = Field(
        default="",
        description="job queue: redis://host:6379/0 for Redis Streams, "
        "redis+cluster://host:7000,host:7001 for a Redis Cluster; empty for embedded SQLite",
    )
    records: str = Field(
        default="",
        description="records and jobs: postgresql://user:pass@host/db; empty for embedded SQLite",
    )

    @field_validator("queue")
    @classmethod
    def _queue(cls, value: str) -> str:
        if not value:
            return value
        try:
            RedisUrl.parse(value)
        except ValueError as exc:
            raise ValueError(f"queue: {exc}; leave it out for SQLite") from None
        return value

    @field_validator("records")
    @classmethod
    def _records(cls, value: str) -> str:
        if value and not value.startswith(_RECORDS):
            raise ValueError(
                f"records {value!r} is not a postgresql:// URL; leave it out for SQLite"
            )
        return value


def apply_stores(settings: Settings, stores: Stores | None) -> Settings:
    """The stack's stores, unless the environment (NUVEM_QUEUE_URL, NUVEM_RECORDS_URL) set
    them: one gateway can be pointed elsewhere without editing the shared stack file."""
    if stores is None:
        return settings
    return dataclasses.replace(
        settings,
        queue_url=settings.queue_url or stores.queue,
        records_url=settings.records_url or stores.records,
    )
