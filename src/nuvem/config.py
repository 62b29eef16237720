"""Typed settings. This is the only module that reads environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

DEFAULT_URL = "http://127.0.0.1:8080"
STATE_DIR_VARIABLE = "NUVEM_STATE_DIR"  # also how a node's Ray processes learn their folder


def default_state_dir() -> Path:
    return Path(platformdirs.user_data_dir("nuvem", appauthor=False))


@dataclass(frozen=True, slots=True)
class Settings:
    url: str = DEFAULT_URL
    # Whether `url` was chosen (NUVEM_URL) rather than defaulted: a chosen one wins over the
    # URL a state folder's gateway recorded.
    url_chosen: bool = False
    admin_password: str | None = None
    state_dir: Path = field(default_factory=default_state_dir)
    api_key: str | None = None
    open_metrics: bool = True
    open_health: bool = True
    warm_workers: int = 1  # pre-started workers per Python environment, for fast cold starts
    tick_interval: float = 1.0  # seconds between the controller's reconcile steps
    # Async jobs: where the queue and records live (empty: SQLite under state_dir), how long a
    # crashed gateway's jobs wait before running again, and callback hosts allowed even when
    # link-local or metadata addresses.
    queue_url: str = ""
    records_url: str = ""
    job_lease: float = 15.0
    callback_allow_hosts: frozenset[str] = frozenset()
    # Calls per second per API key (0: unlimited), and how many may come at once; shared
    # by every gateway through Redis when the queue is Redis.
    rate_limit: float = 0.0
    rate_burst: int = 0
    # InfluxDB export (stack `metrics.influxdb`): each one set here overrides the stack's;
    # the interval stays text, parsed with the stack file's units.
    influxdb_url: str = ""
    influxdb_database: str = ""
    influxdb_bucket: str = ""
    influxdb_org: str = ""
    influxdb_token: str = field(default="", repr=False)
    influxdb_interval: str = ""
    # Bundles (`nuvem package`/`deploy`): the largest upload the gateway takes, and how many
    # versions of each function it keeps for `nuvem rollback`.
    bundle_max_bytes: int = 256 * 2**20
    bundle_keep: int = 5
    # Limits a public gateway needs against hostile clients (docs/limits.md).
    max_body: int = 64 * 2**20  # bytes of a request body; a function's `max_body` overrides it
    max_headers: int = 100  # header lines per request (431 beyond)
    max_header_bytes: int = 16 * 2**10  # names and values together (431 beyond)
    max_url: int = 8 * 2**10  # path and query (414 beyond)
    read_timeout: float = 30.0  # seconds for the headers to arrive, and a body may pause (408)
    keep_alive: float = 5.0  # seconds an idle keep-alive connection stays open
    max_connections: int = 1000  # connections and requests at once (503 beyond)
    # Unauthenticated (401) answers per second per source address, and the burst allowed;
    # past them the address gets 429 with Retry-After. 0: unlimited.
    unauth_rate: float = 5.0
    unauth_burst: int = 20
    # One line per call (stderr under `nuvem up`): off, text or json (off pays nothing).
    access_log: str = "off"
    access_log_flush: float = 0.25  # seconds between the access log's batched writes
    # Image functions: the engine (auto, podman, docker; empty: the stack's
    # container_engine) and where the Docker API listens (DOCKER_HOST, as docker reads it).
    container_engine: str = ""
    docker_host: str = ""
    # Credentials for the stack's registry: (stack/registry.py); never in the stack file.
    registry_username: str = ""
    registry_password: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        state = env.get(STATE_DIR_VARIABLE)
        url = env.get("NUVEM_URL", "").strip().rstrip("/")
        return cls(
            url=url or DEFAULT_URL,
            url_chosen=bool(url),
            admin_password=env.get("NUVEM_ADMIN_PASSWORD") or None,
            state_dir=Path(state).expanduser() if state else default_state_dir(),
            api_key=env.get("NUVEM_API_KEY") or None,
            open_metrics=_flag(env.get("NUVEM_OPEN_METRICS"), default=True),
            open_health=_flag(env.get("NUVEM_OPEN_HEALTH"), default=True),
            warm_workers=int(env.get("NUVEM_WARM_WORKERS") or 1),
            tick_interval=float(env.get("NUVEM_TICK_INTERVAL") or 1.0),
            queue_url=env.get("NUVEM_QUEUE_URL", ""),
            records_url=env.get("NUVEM_RECORDS_URL", ""),
            job_lease=float(env.get("NUVEM_JOB_LEASE") or 15.0),
            callback_allow_hosts=frozenset(
                h.strip().lower()
                for h in env.get("NUVEM_CALLBACK_ALLOW_HOSTS", "").split(",")
                if h.strip()
            ),
            rate_limit=float(env.get("NUVEM_RATE_LIMIT") or 0.0),
            rate_burst=int(env.get("NUVEM_RATE_BURST") or 0),
            influxdb_url=env.get("NUVEM_INFLUXDB_URL", "").strip(),
            influxdb_database=env.get("NUVEM_INFLUXDB_DATABASE", "").strip(),
            influxdb_bucket=env.get("NUVEM_INFLUXDB_BUCKET", "").strip(),
            influxdb_org=env.get("NUVEM_INFLUXDB_ORG", "").strip(),
            influxdb_token=env.get("NUVEM_INFLUXDB_TOKEN", "").strip(),
            influxdb_interval=env.get("NUVEM_INFLUXDB_INTERVAL", "").strip(),
            bundle_max_bytes=int(float(env.get("NUVEM_BUNDLE_MAX_MB") or 256) * 2**20),
            bundle_keep=max(1, int(env.get("NUVEM_BUNDLE_KEEP") or 5)),
            max_body=int(env.get("NUVEM_MAX_BODY") or 64 * 2**20),
            max_headers=int(env.get("NUVEM_MAX_HEADERS") or 100),
            max_header_bytes=int(env.get("NUVEM_MAX_HEADER_BYTES") or 16 * 2**10),
            max_url=int(env.get("NUVEM_MAX_URL") or 8 * 2**10),
            read_timeout=float(env.get("NUVEM_READ_TIMEOUT") or 30.0),
            keep_alive=float(env.get("NUVEM_KEEP_ALIVE") or 5.0),
            max_connections=int(env.get("NUVEM_MAX_CONNECTIONS") or 1000),
            unauth_rate=float(env.get("NUVEM_UNAUTH_RATE") or 5.0),
            unauth_burst=int(env.get("NUVEM_UNAUTH_BURST") or 20),
            access_log=env.get("NUVEM_ACCESS_LOG", "").strip().lower() or "off",
            access_log_flush=float(env.get("NUVEM_ACCESS_LOG_FLUSH") or 0.25),
            container_engine=env.get("NUVEM_CONTAINER_ENGINE", "").strip().lower(),
            docker_host=env.get("DOCKER_HOST", "").strip(),
            registry_username=env.get("NUVEM_REGISTRY_USERNAME", "").strip(),
            registry_password=env.get("NUVEM_REGISTRY_PASSWORD", ""),
        )


def _flag(value: str | None, *, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}
