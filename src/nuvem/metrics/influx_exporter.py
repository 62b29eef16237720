"""`InfluxExporter`: every `interval`, one round of the registry's samples into a bounded
buffer, and the buffer written to InfluxDB in batches.

It runs beside the gateway as one background task and never on a call's path: the round is
sampled and encoded in a thread (the registry has its own locks), writes are awaited with a
timeout, and a failed write only moves the next try back (exponential, with jitter, so
gateways that lost one InfluxDB together do not return to it together). While InfluxDB is
away the buffer fills and then drops its oldest points, counting them
(`nuvem_influxdb_points_dropped_total{reason="buffer_full"}`).
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
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # -- the step --------------------------------------------------------------------------

    async def tick(self, now: float | None = None) -> None:
        """Sample a round if one is due, then write batches until the buffer is empty or a
        write fails."""
        now = self._clock() if now is None else now
        if self._next_round is None or now >= self._next_round:
            await self.sample_round(now)
            upcoming = (now if self._next_round is None else self._next_round) + self.spec.interval
            # Rounds keep their grid, except after a stall (a suspended machine) longer
            # than a round: then the grid starts again from now rather than catching up.
            self._next_round = upcoming if upcoming > now else now + self.spec.interval
        if now >= self._retry_at:
            await self.flush(now)

    def next_due(self) -> float:
        """When `tick` has something to do next."""
        due = self._next_round if self._next_round is not None else -math.inf
        if len(self.buffer):
            due = min(due, self._retry_at)
        return due

    async def sample_round(self, now: float) -> None:
        # One timestamp per round, cut to the precision so every point shows it alike.
        unit = NANOSECONDS[self.spec.precision]
        stamp = int(now * 1e9) // unit * unit
        if self._in_thread:
            lines = await asyncio.to_thread(self._sampler.lines, stamp)
        else:
            lines = self._sampler.lines(stamp)
        dropped = self.buffer.add(lines)
        self.rounds += 1
        self.sampled += len(lines)
        if dropped:
            self.health.dropped.labels("buffer_full").inc(dropped)
        self.health.buffered.set(len(self.buffer))

    async def flush(self, now: float) -> None:
        """Write batches, oldest first, until the buffer is empty or a write fails."""
        # Nothing else adds to the buffer while a write is awaited: sampling happens in
        # this same task, so the batch peeked is still the oldest when it is discarded.
        while len(self.buffer):
            batch = self.buffer.peek(self.spec.batch)
            result = await self.sink.write(("\n".join(batch) + "\n").encode())
            if result.outcome is Outcome.FAILED:
                self.failures += 1
                delay = backoff(self.failures, RETRY_BASE, RETRY_CAP, self._jitter)
                self._retry_at = now + delay
                if self.failures == 1:
                    log.warning(
                        "InfluxDB write failed (%s); keeping %d points, retrying with back-off",
                        result.detail,
                        len(self.buffer),
                    )
                break
            self.buffer.discard(len(batch))
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

    # -- the background task ---------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="influxdb-export")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
                delay = max(0.0, self.next_due() - self._clock())
            except Exception:  # a bad round must not end the export
                log.exception("InfluxDB export step failed")
                delay = self.spec.interval  # nor spin on a step that keeps failing
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()

    async def stop(self) -> None:
        """End the task, then write one last round and what is buffered, within a few
        seconds: the numbers of the platform's last moments are the ones asked about."""
        self._stopping.set()
        if self._task is None:  # never started: nothing was promised to InfluxDB
            await self.sink.close()
            return
        # A write in flight to a hung InfluxDB would hold shutdown for its whole timeout.
        done, _ = await asyncio.wait([self._task], timeout=FINAL_FLUSH_SECONDS)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
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
