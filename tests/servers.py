"""Real redis-server, PostgreSQL and InfluxDB 1.x for tests, started on free loopback ports.

When a server's binaries are missing the tests that need it skip with the reason, except
when the environment variable CI is set: then they fail, so CI never passes by skipping.
PostgreSQL refuses to run as root; as root the server runs as `nobody` (via runuser).
Terraform and Ansible, which the node pool tests run, are checked the same way.
Loaded as a pytest plugin (`-p servers` in pyproject.toml), so every test may ask for
`redis_url`, `clean_redis`, `postgres_server_url`, `postgres_url` and `influxdb` (an
`InfluxServer` a test may stop and start again on the same data), and for a Redis Cluster
of three masters and three replicas (tests/redis_cluster.py): `redis_cluster`, shared by
the session, `clean_redis_cluster` (the same, emptied) and `own_redis_cluster`, one for a
test that kills its nodes; `redis_queue` runs a test on one server, then on the cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from redis_cluster import NODE_TIMEOUT_MS, LocalRedisCluster, redis_cluster_nodes
from support import block_until, die_with_parent, end_pid, free_port, stop_process

PG_BIN = Path(os.environ.get("NUVEM_PG_BIN", "/usr/lib/postgresql/15/bin"))
START_SECONDS = 30.0


def missing(what: str, fix: str) -> NoReturn:
    message = f"{what} is not installed ({fix})"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must run the server tests", pytrace=False)
    pytest.skip(message)


def need_terraform() -> str:
    """The terraform binary node pools drive (tests/providers)."""
    found = shutil.which("terraform")
    if found is None:
        missing("terraform", "install Terraform 1.5 or newer and put it on PATH")
    return found


def need_ansible() -> Path:
    """ansible-playbook beside this Python, as the `local` module finds it."""
    found = Path(sys.executable).parent / "ansible-playbook"
    if not found.exists():
        missing("ansible-playbook", "run `make install`, or pip install 'nuvem[pools]'")
    return found


def _wait_for(check: Callable[[], object], process: subprocess.Popen[bytes], what: str) -> None:
    """Until `check()` passes (it raises while the server does not accept connections)."""

    def accepting() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}; see its log above")
        try:
            check()
        except Exception:  # not accepting connections yet
            return False
        return True

    block_until(accepting, START_SECONDS, f"{what} to start")


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )


def _stop_postgres(data: Path) -> None:
    """Signal the postmaster itself: runuser, its parent, may exit without forwarding."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    end_pid(pid, signal.SIGINT)  # fast shutdown


def _stop(process: subprocess.Popen[bytes], signal_number: int, log: Path) -> None:
    if stop_process(process, signal_number) not in (0, -signal_number):
        print(log.read_text(errors="replace")[-3000:])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server", "run `make system-deps` or apt-get install redis-server")
    import redis

    port = free_port()
    folder = tempfile.mkdtemp(prefix="nuvem-redis-")
    log = Path(folder) / "redis.log"
    process = _spawn(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            folder,
        ],
        log,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        _wait_for(client.ping, process, "redis-server")
        client.close()
        yield url
    finally:
        _stop(process, 15, log)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL cluster; yields the URL of its `postgres` database."""
    if not (PG_BIN / "postgres").exists():
        missing(
            f"PostgreSQL ({PG_BIN}/postgres)", "apt-get install postgresql-15 or set NUVEM_PG_BIN"
        )
    import psycopg

    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "nobody", "--"] if as_root else []
    folder = Path(tempfile.mkdtemp(prefix="nuvem-pg-"))
    if as_root:
        shutil.chown(folder, "nobody")
    data = folder / "data"
    subprocess.run(
        [
            *prefix,
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    log = folder / "postgres.log"
    process = _spawn(
        [
            *prefix,
            str(PG_BIN / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(folder),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ],
        log,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        _wait_for(lambda: psycopg.connect(url, connect_timeout=2).close(), process, "postgres")
        yield url
    finally:
        _stop_postgres(data)
        _stop(process, 2, log)  # SIGINT: fast shutdown
        shutil.rmtree(folder, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """A new, empty database on the server; its URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


class InfluxServer:
    """influxd 1.x (Debian's `influxdb`) with its data in `folder`; `stop` and `start` keep
    the data and the port, as a restarted server would."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = folder / "influxdb.conf"
        self.log = folder / "influxd.log"
        self.process: subprocess.Popen[bytes] | None = None
        # reporting-disabled: no call home; the RPC port (8088 by default) on loopback.
        self.config.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{folder / "meta"}"
[data]
  dir = "{folder / "data"}"
  wal-dir = "{folder / "wal"}"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
"""
        )

    def start(self) -> None:
        self.process = _spawn([self.binary, "-config", str(self.config)], self.log)

        def ping() -> None:
            if httpx.get(f"{self.url}/ping", timeout=2).status_code != 204:
                raise RuntimeError("influxd is not ready")

        _wait_for(ping, self.process, "influxd")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, signal.SIGTERM, self.log)
            self.process = None

    def query(self, statement: str, database: str = "") -> list[dict[str, Any]]:
        """The series an InfluxQL statement returns (each: name, tags, columns, values)."""
        response = httpx.post(
            f"{self.url}/query", data={"q": statement, "db": database}, timeout=10
        )
        response.raise_for_status()
        result = response.json()["results"][0]
        if "error" in result:
            raise AssertionError(f"{statement}: {result['error']}")
        series: list[dict[str, Any]] = result.get("series", [])
        return series


@contextlib.contextmanager
def influxdb_server() -> Iterator[InfluxServer]:
    binary = shutil.which("influxd")
    if binary is None:
        missing("influxd", "run `make system-deps` or apt-get install influxdb")
    folder = Path(tempfile.mkdtemp(prefix="nuvem-influx-"))
    server = InfluxServer(binary, folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def influxdb() -> Iterator[InfluxServer]:
    with influxdb_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    return fresh_database(postgres_server_url)


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    import redis

    with redis.Redis.from_url(redis_url) as client:
        client.flushall()
    return redis_url


@contextlib.contextmanager
def redis_cluster_server(node_timeout_ms: int = NODE_TIMEOUT_MS) -> Iterator[LocalRedisCluster]:
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        missing("redis-server and redis-cli", "run `make system-deps` or apt-get install redis")
    with redis_cluster_nodes(binary, cli, node_timeout_ms) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    with redis_cluster_server() as cluster:
        yield cluster


@pytest.fixture
def clean_redis_cluster(redis_cluster: LocalRedisCluster) -> LocalRedisCluster:
    redis_cluster.flush()
    return redis_cluster


@pytest.fixture
def own_redis_cluster() -> Iterator[LocalRedisCluster]:
    with redis_cluster_server() as cluster:
        yield cluster


@pytest.fixture(params=["redis", "redis-cluster"])
def redis_queue(request: pytest.FixtureRequest) -> str:
    """The URL of an empty Redis: one server, then a cluster (its URL lists every node)."""
    if request.param == "redis":
        url: str = request.getfixturevalue("clean_redis")
        return url
    cluster: LocalRedisCluster = request.getfixturevalue("clean_redis_cluster")
    return cluster.url
