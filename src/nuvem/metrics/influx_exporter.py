"""`InfluxExporter`: every `interval`, one round of the registry's samples into a bounded
buffer, and the buffer written to InfluxDB in batches.

It runs beside the gateway as two background tasks and never on a call's path: one samples
a round each interval, in a thread (the registry has its own locks); the other writes, and
a failed write only moves its next try back (exponential, with jitter, so gateways that
lost one InfluxDB together do not return to it together). Sampling never waits for a write,
so an InfluxDB that hangs costs no rounds: they fill the buffer, which then drops its oldest
points and counts them (`nuvem_influxdb_points_dropped_total{reason="buffer_full"}`).
Tests drive both halves in order with `tick(now)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from nuvem.backoff import backoff
from nuvem.metrics.influx_sink import Outcome, Sink
from nuvem.metrics.line_protocol import NANOSECONDS
from nuvem.metrics.point_buffer import PointBuffer
from nuvem.metrics.registry import InfluxMetrics
from nuvem.metrics.sampler import Sampler
from nuvem.stack.metrics import InfluxSpec

log = logging.getLogger(__name__)

RETRY_BASE = 1.0  # seconds before the first retry; doubles with each failure
RETRY_CAP = 60.0
FINAL_FLUSH_SECONDS = 5.0  # how long `stop` may spend writing what is left


class InfluxExporter:
    def __init__(
        self,
        spec: InfluxSpec,
        registry: CollectorRegistry,
        sink: Sink,
        *,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        in_thread: bool = True,  # sample off the event loop; tests on fakes may say False
    ) -> None:
        self.spec = spec
        self.sink = sink
        self.buffer = PointBuffer(spec.buffer)
        self.health = InfluxMetrics(registry)
        self.failures = 0  # writes failed in a row
        self.rounds = 0  # rounds sampled
        self.sampled = 0  # points sampled, written or not
        self._sampler = Sampler(registry, spec.precision)
        self._clock = clock
        self._jitter = jitter
        self._in_thread = in_thread
        self._next_round: float | None = None  # None: at the first tick
        self._retry_at = -math.inf
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._new_round = asyncio.Event()  # wakes the writer

    # -- the step --------------------------------------------------------------------------

    async def tick(self, now: float | None = None) -> None:
        """Sample a round if one is due, then write batches unless a retry is not due yet."""
        now = self._clock() if now is None else now
        if self.round_due() <= now:
            await self.sample_round(now)
        if now >= self._retry_at:
            await self.flush(now)

    def round_due(self) -> float:
        return -math.inf if self._next_round is None else self._next_round

    def next_due(self) -> float:
        """When `tick` has something to do next."""
        if self.buffer.waiting:
            return min(self.round_due(), self._retry_at)
        return self.round_due()

    async def sample_round(self, now: float) -> None:
        # One timestamp per round, cut to the precision so every point shows it alike.
        unit = NANOSECONDS[self.spec.precision]
        stamp = int(now * 1e9) // unit * unit
        if self._in_thread:
            lines = await asyncio.to_thread(self._sampler.lines, stamp)
        else:
            lines = self._sampler.lines(stamp)
        self._count_dropped(self.buffer.add(lines))
        self.rounds += 1
        self.sampled += len(lines)
        upcoming = (now if self._next_round is None else self._next_round) + self.spec.interval
        # Rounds keep their grid, except after a stall (a suspended machine) longer than a
        # round: then the grid starts again from now rather than catching up.
        self._next_round = upcoming if upcoming > now else now + self.spec.interval
        self.health.buffered.set(len(self.buffer))
        self._new_round.set()

    async def flush(self, now: float) -> None:
        """Write batches, oldest first, until none waits or a write fails."""
        while self.buffer.waiting:
            batch = self.buffer.take(self.spec.batch)
            try:
                result = await self.sink.write(("\n".join(batch) + "\n").encode())
            except BaseException:  # cancelled at shutdown, or a broken sink: keep the batch
                self.buffer.give_back()
                raise
            if result.outcome is Outcome.FAILED:
                self.buffer.give_back()
                self.failures += 1
                delay = backoff(self.failures, RETRY_BASE, RETRY_CAP, self._jitter)
                # From when the failure was seen: a write that timed out took a while.
                self._retry_at = self._clock() + delay
                if self.failures == 1:
                    log.warning(
                        "InfluxDB write failed (%s); keeping %d points, retrying with back-off",
                        result.detail,
                        len(self.buffer),
                    )
                break
            self.buffer.done()
            if result.outcome is Outcome.REFUSED:
                self.health.dropped.labels("refused").inc(len(batch))
                log.warning("InfluxDB refused %d points: %s", len(batch), result.detail)
            else:
                self.health.sent.inc(len(batch))
                self.health.last_success.set(self._clock())
            if self.failures:
                log.info("InfluxDB writes work again after %d failures", self.failures)
                self.failures = 0
        self.health.buffered.set(len(self.buffer))

    def _count_dropped(self, count: int) -> None:
        if count:
            self.health.dropped.labels("buffer_full").inc(count)

    # -- the background tasks --------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._sample_loop(), name="influxdb-sample"),
            asyncio.create_task(self._write_loop(), name="influxdb-write"),
        ]

    async def _sample_loop(self) -> None:
        while not self._stopped.is_set():
            now = self._clock()
            try:
                await self.sample_round(now)
            except Exception:  # a bad round must not end the export
                log.exception("InfluxDB export: sampling a round failed")
                self._next_round = now + self.spec.interval
            await _wait(self._stopped, self.round_due() - self._clock())

    async def _write_loop(self) -> None:
        while not self._stopped.is_set():
            self._new_round.clear()  # before the flush: a round during it is not missed
            now = self._clock()
            if self.buffer.waiting and now >= self._retry_at:
                try:
                    await self.flush(now)
                except Exception:
                    log.exception("InfluxDB export: writing failed")
                    self._retry_at = now + self.spec.interval  # a round later, not a spin
                continue
            # Nothing to write, or a retry not due: wait for a round, or for the retry.
            due = self._retry_at if self.buffer.waiting else math.inf
            await _wait(self._new_round, due - now)

    async def stop(self) -> None:
        """End the tasks, then write one last round and what is buffered, within a few
        seconds: the numbers of the platform's last moments are the ones asked about."""
        self._stopped.set()
        self._new_round.set()
        if not self._tasks:  # never started: nothing was promised to InfluxDB
            await self.sink.close()
            return
        # A write in flight to a hung InfluxDB would hold shutdown for its whole timeout.
        _, pending = await asyncio.wait(self._tasks, timeout=FINAL_FLUSH_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            async with asyncio.timeout(FINAL_FLUSH_SECONDS):
                now = self._clock()
                await self.sample_round(now)
                await self.flush(now)
        except TimeoutError:
            log.warning("InfluxDB did not take the last %d points in time", len(self.buffer))
        except Exception:  # shutdown goes on whatever the export does
            log.exception("InfluxDB export's last write failed")
        finally:
            await self.sink.close()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set or `seconds` have passed (forever when infinite)."""
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(None if math.isinf(seconds) else seconds):
            await event.wait()
