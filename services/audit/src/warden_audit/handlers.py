"""The JetStream side of audit: a durable pull consumer on the whole events stream.

    fetch (batch) -> parse -> [queue of 2 batches] -> write (one transaction) -> ack each

Fetching and parsing the next batch overlaps with Postgres writing the current one.
Acks only after commit. Postgres unreachable: the batch is held and retried with backoff
(its messages kept in progress), nothing is acked, JetStream keeps the rest. A message
that cannot be parsed or stored becomes a dead letter (acked), never a blocked stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import Counter, Gauge, Histogram
from warden_common.bus import Bus
from warden_common.contracts import events_wildcard

from warden_audit.parse import TIME, Batch
from warden_audit.puller import ConsumerGone, Delivery, Puller, reply_all
from warden_audit.service import PHASE, Ingestor, Stored

__all__ = ["DURABLE", "Consumer"]

log = logging.getLogger(__name__)

# The stream's name carries the run's root, so the durable name needs nothing more.
DURABLE = "audit"

STORED = Counter("warden_audit_events_stored_total", "events stored (first delivery of an id)")
SEEN = Counter("warden_audit_messages_total", "messages taken off the stream (incl. redeliveries)")
DEAD = Counter("warden_audit_dead_letters_total", "messages stored as dead letters")
LAG = Gauge("warden_audit_consumer_lag", "events in the stream not yet delivered to audit (num_pending)")
ACK_PENDING = Gauge("warden_audit_consumer_ack_pending", "events delivered to audit, not yet acked")
DB_UP = Gauge("warden_audit_store_up", "1 while ingest can write to Postgres")
DELAY = Gauge("warden_audit_ingest_delay_seconds", "commit time minus event time, newest event of the last batch")
WRITE = Histogram(
    "warden_audit_batch_write_seconds", "one batch's transaction", buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
)
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class Consumer:
    def __init__(
        self,
        bus: Bus,
        ingestor: Ingestor,
        *,
        batch: int,
        writers: int = 1,
        linger_s: float = 0.0,
        fetch_timeout_s: float,
        ack_wait_s: float,
        max_ack_pending: int,
    ) -> None:
        self.bus = bus
        self.ingestor = ingestor
        self.batch = batch
        self.writers = writers
        self.linger_s = linger_s
        self.fetch_timeout_s = fetch_timeout_s
        self.ack_wait_s = ack_wait_s
        self.max_ack_pending = max_ack_pending
        self.lag = 0
        self.ack_pending = 0
        self.db_ok = True
        self.db_error: str | None = None
        self._sub: Any = None
        self._queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=writers + 1)
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self._subscribe()
        self._tasks = [
            asyncio.create_task(self._fetch_loop(), name="audit-fetch"),
            asyncio.create_task(self._lag_loop(), name="audit-lag"),
            *(asyncio.create_task(self._write_loop(), name=f"audit-write-{i}") for i in range(self.writers)),
        ]

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop fetching, give the writer a moment to finish what it holds, then stop."""
        if not self._tasks:
            return
        fetch, lag, *writes = self._tasks
        for t in (fetch, lag):
            t.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=timeout_s)
        for t in writes:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        # what was fetched but not stored goes back to the stream at once (not after ack_wait)
        while not self._queue.empty():
            await self._reply(self._queue.get_nowait().all_handles(), Msg.Ack.Nak)
        if self._sub is not None:
            await self._reply(self._sub.release(), Msg.Ack.Nak)
            await self._sub.stop()
            self._sub = None

    async def _reply(self, deliveries: list[Delivery], what: bytes) -> None:
        """Ack (nak, in progress) each message, all in one write. If that fails they are not
        acked: JetStream redelivers them, and their ids make that a no-op."""
        assert self.bus.nc is not None
        try:
            await reply_all(self.bus.nc, deliveries, what)
        except nats.errors.Error as e:
            log.debug("audit: ack failed (%s)", type(e).__name__)

    async def _subscribe(self) -> None:
        assert self.bus.nc is not None
        js = self.bus.nc.jetstream()
        config = ConsumerConfig(
            durable_name=DURABLE,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_ack_pending=self.max_ack_pending,
            deliver_policy=DeliverPolicy.ALL,
            max_deliver=-1,
            filter_subject=events_wildcard(self.bus.root),
        )
        try:
            await js.consumer_info(self.bus.events_stream, DURABLE)
        except nats.js.errors.NotFoundError:
            await js.add_consumer(self.bus.events_stream, config=config)
        if self._sub is not None:
            await self._sub.stop()
        self._sub = Puller(self.bus.nc, self.bus.events_stream, DURABLE)
        await self._sub.start()

    # -- fetch -------------------------------------------------------------------------------
    async def _fetch_loop(self) -> None:
        delay = 0.1
        fetch_time = PHASE.labels("fetch")
        while True:
            t0 = time.perf_counter()
            try:
                msgs = await self._sub.take(self.batch, self.fetch_timeout_s)
                if 0 < len(msgs) < self.batch // 4 and self.linger_s > 0:
                    # a trickle: wait a moment for more, so a quiet stream costs one
                    # transaction per linger rather than one per event or two
                    await asyncio.sleep(self.linger_s)
                    msgs += self._sub.take_now(self.batch - len(msgs))
            except asyncio.CancelledError:
                raise
            except (ConsumerGone, nats.js.errors.NotFoundError, nats.js.errors.ServiceUnavailableError) as e:
                # the stream or consumer vanished (e.g. NATS came back without its store)
                log.warning("audit: consumer unavailable (%s); re-creating it", type(e).__name__)
                await self._recover(delay)
                delay = min(delay * 2, 5.0)
                continue
            except Exception:  # noqa: BLE001 - top of the fetch task: log, back off, go on
                log.exception("audit: fetch failed; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if not msgs:
                continue
            delay = 0.1
            fetch_time.inc(time.perf_counter() - t0)
            SEEN.inc(len(msgs))
            batch = await self.ingestor.parse_yielding(msgs)
            for d in batch.dead:
                d.stream_seq = d.handle.stream_seq
            await self._queue.put(batch)

    async def _recover(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self.bus.ensure_events_stream()
            await self._subscribe()
        except (nats.errors.Error, OSError) as e:
            log.warning("audit: cannot re-create the consumer yet (%s)", type(e).__name__)

    # -- write -------------------------------------------------------------------------------
    async def _write_loop(self) -> None:
        ack_time = PHASE.labels("ack")
        while True:
            batch = await self._queue.get()
            await self._store(batch)
            t0 = time.perf_counter()
            await self._reply(batch.all_handles(), Msg.Ack.Ack)
            ack_time.inc(time.perf_counter() - t0)
            self._queue.task_done()

    async def _store(self, batch: Batch) -> None:
        delay = 0.2
        failures = 0
        last_touch = time.monotonic()
        while True:
            t0 = time.perf_counter()
            try:
                out: Stored
                if failures >= 3:
                    out = await self.ingestor.write_isolating(batch)
                else:
                    out = await self.ingestor.write(batch)
            except asyncio.CancelledError:
                raise
            except _DB_ERRORS as e:
                if self.db_ok:
                    log.warning(
                        "audit: Postgres unavailable (%s); ingest paused, JetStream holds the events", type(e).__name__
                    )
                self.db_ok = False
                self.db_error = type(e).__name__
                DB_UP.set(0)
            except Exception:  # noqa: BLE001 - top of the write task: a bug must not block the stream
                failures += 1
                log.exception("audit: storing a batch failed (attempt %d)", failures)
            else:
                break
            if time.monotonic() - last_touch > self.ack_wait_s / 2:
                last_touch = time.monotonic()
                await self._reply(batch.handles, Msg.Ack.Progress)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        WRITE.observe(time.perf_counter() - t0)
        if not self.db_ok:
            log.warning("audit: Postgres is back; ingest resumed")
        self.db_ok = True
        self.db_error = None
        DB_UP.set(1)
        STORED.inc(len(out.rows))
        if out.dead:
            DEAD.inc(len(out.dead))
        if out.rows:
            DELAY.set(max(0.0, time.time() - out.rows[-1][TIME].timestamp()))

    # -- lag ---------------------------------------------------------------------------------
    async def _lag_loop(self) -> None:
        while True:
            await self.refresh_lag()
            await asyncio.sleep(2.0)

    async def refresh_lag(self) -> int:
        try:
            assert self.bus.nc is not None
            info = await self.bus.nc.jetstream().consumer_info(self.bus.events_stream, DURABLE, timeout=5)
        except (nats.errors.Error, OSError, AssertionError) as e:
            log.debug("audit: consumer info unavailable (%s)", type(e).__name__)
            return self.lag
        self.lag = int(info.num_pending or 0)
        self.ack_pending = int(info.num_ack_pending or 0)
        LAG.set(self.lag)
        ACK_PENDING.set(self.ack_pending)
        return self.lag
