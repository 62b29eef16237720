"""The InfluxDB exporter stepped by hand on a fake clock, writing to the in-memory sink."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from nuvem.backoff import backoff
from nuvem.metrics import influx_exporter
from nuvem.metrics.fake_sink import FakeSink
from nuvem.metrics.influx_exporter import RETRY_BASE, RETRY_CAP, InfluxExporter
from nuvem.metrics.influx_sink import Outcome, WriteResult
from nuvem.stack.metrics import InfluxSpec
from support import FakeClock, wait_until

pytestmark = pytest.mark.anyio


def exporter(
    registry: CollectorRegistry, sink: FakeSink, clock: FakeClock, **spec: Any
) -> InfluxExporter:
    fields = {"url": "http://127.0.0.1:1", "database": "nuvem", "interval": 10.0, **spec}
    return InfluxExporter(
        InfluxSpec(**fields), registry, sink, clock=clock, jitter=lambda: 1.0, in_thread=False
    )


def counters(count: int) -> CollectorRegistry:
    """A registry of `count` series (plus the exporter's own, once it is made)."""
    registry = CollectorRegistry()
    calls = Counter("calls", "calls", ["n"], registry=registry)
    for n in range(count):
        calls.labels(str(n)).inc(n)
    return registry


def own_series() -> int:
    """Series the exporter adds to the registry: sent, dropped x2, buffered, last success."""
    return 5


def stamps(lines: list[str]) -> list[int]:
    return [int(line.rsplit(" ", 1)[1]) for line in lines]


async def test_a_round_is_written_in_batches() -> None:
    sink, clock = FakeSink(), FakeClock(100.0)
    export = exporter(counters(12 - own_series()), sink, clock, batch=5)
    await export.tick()
    assert [len(b) for b in sink.batches] == [5, 5, 2]
    assert len(sink.written) == 12
    assert set(stamps(sink.written)) == {100_000}  # one round, in milliseconds
    assert export.health.sent._value.get() == 12
    assert export.health.last_success._value.get() == 100.0
    assert len(export.buffer) == 0


async def test_rounds_come_every_interval() -> None:
    sink, clock = FakeSink(), FakeClock(0.0)
    export = exporter(counters(1), sink, clock, interval=10.0)
    for now in (0.0, 4.0, 9.9, 10.0, 15.0, 20.0, 55.0):  # 55: after a stall, no catching up
        clock.now = now
        await export.tick()
    assert export.rounds == 4
    assert sorted(set(stamps(sink.written))) == [0, 10_000, 20_000, 55_000]
    assert export.next_due() == 65.0


async def test_failed_writes_back_off_exponentially_and_keep_the_points() -> None:
    sink, clock = FakeSink(), FakeClock(0.0)
    export = exporter(counters(3), sink, clock, interval=60.0)
    sink.answer_next(Outcome.FAILED, Outcome.FAILED, Outcome.FAILED)
    tries = []
    while len(sink.written) == 0:
        clock.now = max(clock.now, export.next_due())  # -inf before the first round
        await export.tick()
        tries.append(clock.now)
    # jitter 1.0 is the full delay: 1 s, 2 s, 4 s after each failure.
    assert tries == [0.0, 1.0, 3.0, 7.0]
    assert [backoff(n, RETRY_BASE, RETRY_CAP) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert len(sink.batches) == 4
    assert sink.batches[0] == sink.batches[-1]  # the same points, kept
    assert export.failures == 0
    assert export.health.dropped.labels("buffer_full")._value.get() == 0


async def test_between_retries_nothing_is_written() -> None:
    sink, clock = FakeSink(), FakeClock(0.0)
    export = exporter(counters(3), sink, clock, interval=60.0)
    sink.answer_next(Outcome.FAILED)
    await export.tick()
    clock.now = 0.5
    await export.tick()
    assert len(sink.batches) == 1
    assert export.next_due() == 1.0


async def test_the_retry_delay_is_capped() -> None:
    sink, clock = FakeSink(), FakeClock(0.0)
    export = exporter(counters(1), sink, clock, interval=3600.0)
    sink.answer_next(*[Outcome.FAILED] * 12)
    delays = []
    for _ in range(12):
        before = clock.now
        await export.tick()
        clock.now = export.next_due()
        delays.append(clock.now - before)
    assert max(delays) == RETRY_CAP
    assert delays[:3] == [1.0, 2.0, 4.0]


async def test_a_full_buffer_drops_the_oldest_and_counts_them() -> None:
    sink, clock = FakeSink(), FakeClock(0.0)
    per_round = 4 + own_series()
    export = exporter(counters(4), sink, clock, interval=1.0, buffer=2 * per_round + 3)
    sink.answer_next(*[Outcome.FAILED] * 100)
    for second in range(10):
        clock.now = float(second)
        await export.tick()
        assert len(export.buffer) <= export.buffer.limit
    dropped = 10 * per_round - export.buffer.limit
    assert export.health.dropped.labels("buffer_full")._value.get() == dropped
    assert export.health.buffered._value.get() == export.buffer.limit
    kept = export.buffer.peek(export.buffer.limit)
    assert min(stamps(kept)) == 7_000  # the newest rounds are the ones kept
    sink.heal()
    while not sink.written:  # rounds go on until the next retry is due
        clock.now = export.next_due()
        await export.tick()
    assert export.health.sent._value.get() == export.buffer.limit  # a full buffer, then
    assert export.health.buffered._value.get() == 0


async def test_a_refused_batch_is_dropped_and_the_next_one_still_goes() -> None:
    sink, clock = FakeSink(), FakeClock(0.0)
    export = exporter(counters(10 - own_series()), sink, clock, batch=4)
    sink.answer_next(Outcome.REFUSED)
    await export.tick()
    assert [len(b) for b in sink.batches] == [4, 4, 2]
    assert len(sink.written) == 6
    assert export.health.dropped.labels("refused")._value.get() == 4
    assert export.failures == 0
    assert len(export.buffer) == 0


async def test_the_exporters_health_is_on_the_registry() -> None:
    registry = counters(1)
    sink, clock = FakeSink(), FakeClock(5.0)
    await exporter(registry, sink, clock).tick()
    text = generate_latest(registry).decode()
    for name in (
        "nuvem_influxdb_points_sent_total",
        'nuvem_influxdb_points_dropped_total{reason="buffer_full"}',
        'nuvem_influxdb_points_dropped_total{reason="refused"}',
        "nuvem_influxdb_points_buffered",
        "nuvem_influxdb_last_success_timestamp_seconds 5.0",
    ):
        assert name in text


async def test_the_background_task_exports_until_stopped_then_writes_a_last_round() -> None:
    sink = FakeSink()
    export = InfluxExporter(
        InfluxSpec(url="http://127.0.0.1:1", database="d", interval=0.05),
        counters(1),
        sink,
    )
    export.start()
    await wait_until(lambda: export.rounds >= 3, what="three rounds")
    await export.stop()
    rounds = export.rounds
    assert sink.closed
    assert len(set(stamps(sink.written))) == rounds  # the last one included
    assert len(export.buffer) == 0


class HungSink(FakeSink):
    """An InfluxDB that accepts the connection and never answers."""

    async def write(self, body: bytes) -> WriteResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_hung_influxdb_does_not_hold_shutdown_past_its_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(influx_exporter, "FINAL_FLUSH_SECONDS", 0.2)
    sink = HungSink()
    export = InfluxExporter(
        InfluxSpec(url="http://127.0.0.1:1", database="d", interval=0.05), counters(1), sink
    )
    export.start()
    await wait_until(lambda: export.rounds >= 1, what="a round")
    started = time.monotonic()
    await export.stop()
    assert time.monotonic() - started < 2.0
    assert sink.closed
    assert len(export.buffer) > 0  # kept, not counted as sent


class BrokenSink(FakeSink):
    async def write(self, body: bytes) -> WriteResult:
        self.batches.append([])
        raise RuntimeError("a bug in a sink")


async def test_a_failing_step_is_logged_and_retried_a_round_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = BrokenSink()
    export = InfluxExporter(
        InfluxSpec(url="http://127.0.0.1:1", database="d", interval=0.05), counters(1), sink
    )
    export.start()
    await wait_until(lambda: len(sink.batches) >= 3, what="three tries")
    await export.stop()
    assert "InfluxDB export: writing failed" in caplog.text
    assert len(sink.batches) < 40  # a round apart, not a spin


class GatedSink(FakeSink):
    """An InfluxDB that takes each write only once `gate` opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def write(self, body: bytes) -> WriteResult:
        await self.gate.wait()
        return await super().write(body)


async def test_rounds_go_on_while_a_write_hangs_and_every_point_is_sent_or_counted() -> None:
    sink = GatedSink()
    per_round = 3 + own_series()
    export = InfluxExporter(
        InfluxSpec(url="http://127.0.0.1:1", database="d", interval=0.02, buffer=4 * per_round),
        counters(3),
        sink,
    )
    export.start()
    await wait_until(lambda: export.rounds >= 8, what="rounds while the first write hangs")
    dropped = export.health.dropped.labels("buffer_full")
    assert dropped._value.get() > 0
    assert len(export.buffer) == export.buffer.limit
    sink.gate.set()
    await export.stop()
    assert len(export.buffer) == 0
    assert export.health.sent._value.get() + dropped._value.get() == export.sampled
    assert len(sink.written) == export.health.sent._value.get()
    # The first batch (the first round) was in flight throughout: written, never dropped.
    assert min(stamps(sink.written)) == min(stamps(sink.batches[0]))
