"""The export against real servers: a gateway pushing to a real influxd 1.x, which is stopped
and started again; and the 2.x write API against a local HTTP server (no 2.x server is
packaged here), checking what a 2.x server would be sent."""

from __future__ import annotations

import gzip
import textwrap
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from nuvem.metrics.influx_exporter import InfluxExporter
from nuvem.metrics.influx_sink import HttpSink, Outcome
from nuvem.metrics.line_protocol import Point, encode
from nuvem.metrics.registry import Metrics
from nuvem.stack.loader import load_stack_text
from nuvem.stack.metrics import InfluxSpec
from servers import InfluxServer
from support import FakeClock, callback_receiver, serving, wait_until

pytestmark = pytest.mark.anyio

DATABASE = "nuvem"


def stored_points(influxdb: InfluxServer) -> int:
    series = influxdb.query('SELECT count("value") FROM /.*/', DATABASE)
    return sum(int(s["values"][0][1]) for s in series)


def invocations(influxdb: InfluxServer) -> float:
    series = influxdb.query(
        'SELECT last("value") FROM "gateway_function_invocation_total" '
        "WHERE \"function_name\" = 'echo' AND \"code\" = '200'",
        DATABASE,
    )
    return float(series[0]["values"][0][1]) if series else 0.0


async def test_a_gateway_exports_to_influxdb_and_loses_only_what_it_counts_as_dropped(
    influxdb: InfluxServer, handlers_dir: Path, tmp_path: Path
) -> None:
    influxdb.query(f"CREATE DATABASE {DATABASE}")
    stack = load_stack_text(
        textwrap.dedent(
            f"""
            functions:
              echo: {{handler: "handlers:echo"}}
            metrics:
              influxdb: {{url: "{influxdb.url}", database: {DATABASE}, interval: 200ms,
                          buffer: 400}}
            """
        ),
        "nuvem.yaml",
        handlers_dir,
    )
    async with serving(handlers_dir, tmp_path / "state", stack=stack) as gateway:
        export = gateway.platform.exporter
        assert export is not None
        await wait_until(lambda: gateway.platform.controller.get("echo").ready(), 60, "echo ready")
        for _ in range(5):
            assert (await gateway.invoke("echo", b"hi")).status_code == 200
        await wait_until(lambda: invocations(influxdb) == 5.0, 20, "5 calls in InfluxDB")

        influxdb.stop()
        dropped = export.health.dropped.labels("buffer_full")
        await wait_until(lambda: dropped._value.get() > 400, 30, "the buffer to overflow")
        assert len(export.buffer) == 400
        assert export.failures > 0
        influxdb.start()
        await wait_until(lambda: export.failures == 0, 30, "writes to work again")
    # Stopping the platform wrote a last round; every count is final now.
    assert len(export.buffer) == 0
    lost = export.sampled - stored_points(influxdb)
    assert 0 < lost <= dropped._value.get()
    assert export.health.dropped.labels("refused")._value.get() == 0
    assert export.health.sent._value.get() == export.sampled - dropped._value.get()


async def test_a_bucket_is_written_through_the_2x_api_gzipped_with_the_token() -> None:
    metrics = Metrics()
    metrics.observe_call("echo", 200, 0.01)
    async with callback_receiver() as receiver:
        spec = InfluxSpec(url=receiver.url, bucket="metrics", org="lab", precision="s")
        clock = FakeClock(1_700_000_000.5)
        export = InfluxExporter(spec, metrics.registry, HttpSink(spec, token="t0k"), clock=clock)
        receiver.fail_next = 1
        await export.tick()
        assert export.failures == 1
        assert len(export.buffer) > 0
        clock.advance(1.5)  # the retry is due
        await export.tick()
        await export.sink.close()
    (request,) = receiver.received
    assert request.path == "/api/v2/write"
    assert parse_qs(request.query) == {"org": ["lab"], "bucket": ["metrics"], "precision": ["s"]}
    assert request.headers["authorization"] == "Token t0k"
    assert request.headers["content-encoding"] == "gzip"
    lines = gzip.decompress(request.body).decode().splitlines()
    assert "gateway_function_invocation_total,code=200,function_name=echo value=1.0 1700000000" in (
        lines
    )
    assert len(lines) == export.health.sent._value.get()


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (204, Outcome.WRITTEN),
        (200, Outcome.WRITTEN),
        (400, Outcome.REFUSED),  # a bad line, or a field type conflict
        (413, Outcome.REFUSED),
        (401, Outcome.FAILED),  # a token someone can fix: keep the points
        (404, Outcome.FAILED),  # no such database yet
        (429, Outcome.FAILED),
        (500, Outcome.FAILED),
        (503, Outcome.FAILED),
    ],
)
async def test_what_each_answer_means(status: int, outcome: Outcome) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert gzip.decompress(request.content) == b"m value=1.0 0\n"
        return httpx.Response(status, json={"error": "told so"})

    spec = InfluxSpec(url="http://influx.test:8086", database="d")
    sink = HttpSink(spec, transport=httpx.MockTransport(answer))
    result = await sink.write(b"m value=1.0 0\n")
    await sink.close()
    assert result.outcome is outcome
    if outcome is not Outcome.WRITTEN:
        assert str(status) in result.detail


async def test_an_unreachable_server_is_a_failure_to_retry() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    spec = InfluxSpec(url="http://influx.test:8086", database="d")
    sink = HttpSink(spec, transport=httpx.MockTransport(refuse))
    result = await sink.write(b"m value=1.0 0\n")
    await sink.close()
    assert result.outcome is Outcome.FAILED
    assert "ConnectError" in result.detail


def test_influxd_reads_the_hard_names_as_the_encoder_promises(influxdb: InfluxServer) -> None:
    influxdb.query("CREATE DATABASE hard")
    point = Point(
        "cpu load,x",
        {"text": 'a\nb "q" \\', 'k"ey': 1.0, "n": 3},
        {"ends": "a\\", "inside": "x\\y", "breaks": "l\nm", "specials": "a,b=c d"},
        10**9,
    )
    line = encode(point)
    assert line is not None
    response = httpx.post(f"{influxdb.url}/write?db=hard", content=line + "\n", timeout=10)
    assert response.status_code == 204, response.text
    (series,) = influxdb.query('SELECT * FROM "cpu load,x"', "hard")
    row = dict(zip(series["columns"], series["values"][0], strict=True))
    assert row == {
        "time": "1970-01-01T00:00:01Z",
        "text": 'a\nb "q" \\',
        'k"ey': 1.0,
        "n": 3,
        "ends": "a/",
        "inside": "x\\y",
        "breaks": "l m",
        "specials": "a,b=c d",
    }
