"""The `metrics:` block of a stack file: where nuvem pushes its metrics besides /metrics.

```yaml
metrics:
  influxdb: {url: http://influx:8086, database: nuvem}        # 1.x: /write
  # influxdb: {url: ..., bucket: nuvem, org: lab, token_file: influx.token}   # 2.x
```

The environment (NUVEM_INFLUXDB_URL and its siblings, read by config.py) can set or
override every field, so one gateway, or a benchmark, turns the export on without editing
the shared stack file.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from nuvem.config import Settings
from nuvem.errors import SpecError
from nuvem.stack.function import Seconds, Strict

PRECISION_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


class InfluxSpec(Strict):
    """One InfluxDB: a 1.x database, or a 2.x bucket of an organisation."""

    url: str = Field(description="the server, e.g. http://127.0.0.1:8086")
    database: str = Field(default="", description="a 1.x database (written through /write)")
    bucket: str = Field(default="", description="a 2.x bucket (through /api/v2/write, with org)")
    org: str = Field(default="", description="the 2.x organisation the bucket belongs to")
    token: str = Field(
        default="",
        repr=False,
        description="the API token; better token_file or NUVEM_INFLUXDB_TOKEN, kept out of "
        "the file",
    )
    token_file: str = Field(
        default="", description="a file holding the token, relative to the stack file"
    )
    interval: Seconds = Field(default=10.0, description="time between two rounds of samples")
    buffer: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="points kept while InfluxDB is unreachable; the oldest go first",
    )
    batch: int = Field(default=5_000, ge=1, le=100_000, description="points per write at most")
    precision: Literal["ns", "us", "ms", "s"] = Field(
        default="ms", description="timestamp precision: ns, us, ms or s"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"url {value!r} is not an http(s) URL; write e.g. http://127.0.0.1:8086"
            )
        if parts.query or parts.fragment:
            raise ValueError(
                f"url {value!r} has a query; write the server alone and database: or bucket:"
            )
        return value

    @model_validator(mode="after")
    def _target(self) -> InfluxSpec:
        if bool(self.database) == bool(self.bucket):
            raise ValueError(
                "write exactly one of database (InfluxDB 1.x) or bucket (InfluxDB 2.x, "
                f"with org), not {'both' if self.database else 'neither'}"
            )
        if self.bucket and not self.org:
            raise ValueError("bucket (InfluxDB 2.x) needs org: the organisation it belongs to")
        if self.database and self.org:
            raise ValueError("org applies to a 2.x bucket only; remove org or write bucket")
        if self.token and self.token_file:
            raise ValueError("write one of token or token_file, not both")
        if self.interval < PRECISION_SECONDS[self.precision]:
            raise ValueError(
                f"interval {self.interval}s is shorter than precision {self.precision}: "
                "rounds would share a timestamp and overwrite each other; write precision: ms"
            )
        return self


class MetricsSpec(Strict):
    influxdb: InfluxSpec | None = Field(
        default=None, description="push every metric to InfluxDB as line protocol"
    )


def influx_target(settings: Settings, block: MetricsSpec | None) -> InfluxSpec | None:
    """The InfluxDB to export to: the stack's, with the environment's settings over it."""
    given = block.influxdb if block is not None else None
    env = _from_env(settings)
    if not env:
        return given
    data: dict[str, Any] = given.model_dump() if given is not None else {}
    if "database" in env or "bucket" in env:
        # The environment picks the server version; keep nothing of the other one.
        data = {k: v for k, v in data.items() if k not in ("database", "bucket", "org")}
    if "token" in env:
        data.pop("token_file", None)
    data.update(env)
    try:
        return InfluxSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'influxdb'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise SpecError(
            f"the InfluxDB export from NUVEM_INFLUXDB_* and the stack is not valid: {problems}",
            hint="set NUVEM_INFLUXDB_URL with NUVEM_INFLUXDB_DATABASE (1.x) or "
            "NUVEM_INFLUXDB_BUCKET and NUVEM_INFLUXDB_ORG (2.x)",
        ) from None


def _from_env(settings: Settings) -> dict[str, str]:
    names = {
        "url": settings.influxdb_url,
        "database": settings.influxdb_database,
        "bucket": settings.influxdb_bucket,
        "org": settings.influxdb_org,
        "token": settings.influxdb_token,
        "interval": settings.influxdb_interval,
    }
    return {key: value for key, value in names.items() if value}
