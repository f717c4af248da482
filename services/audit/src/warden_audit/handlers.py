"""Ingest: a durable JetStream pull consumer on every event, written in batches with COPY,
idempotent on the event id, acked only after the transaction commits. Unparseable
messages go to the dead-letter table (acked). Postgres down: nothing is acked, the
consumer backs off and JetStream keeps the events until it returns."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import asyncpg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from warden_common.bus import Bus
from warden_common.contracts import Event, events_wildcard

from warden_audit.service import Tail, to_event
from warden_audit.store import Store, event_row

__all__ = ["Ingest"]

log = logging.getLogger(__name__)
STORED = Counter("warden_audit_events_stored_total", "events stored")
DEAD = Counter("warden_audit_dead_letters_total", "messages sent to the dead-letter table")
LAG = Gauge("warden_audit_consumer_lag", "events in the stream not yet stored")


class Ingest:
    def __init__(self, bus: Bus, store: Store, tail: Tail, *, batch: int, dead_cap: int) -> None:
        self.bus = bus
        self.store = store
        self.tail = tail
        self.batch = batch
        self.dead_cap = dead_cap
        self.lag = 0
        self.db_ok = True
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        js = self.bus.nc.jetstream()  # type: ignore[union-attr]
        self._sub = await js.pull_subscribe(
            events_wildcard(self.bus.root),
            durable="audit",
            stream=self.bus.events_stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT, ack_wait=60, max_ack_pending=50_000, deliver_policy=DeliverPolicy.ALL
            ),
        )
        self._task = asyncio.create_task(self._loop(), name="audit-ingest")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await self._once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - top of the ingest task: never die silently
                log.exception("audit: ingest step failed; unacked events will be redelivered")
                await asyncio.sleep(1.0)

    async def _once(self) -> None:
        delay = 0.2
        for _ in (0,):
            try:
                msgs = await self._sub.fetch(batch=self.batch, timeout=1.0)
            except TimeoutError:
                await self._update_lag()
                return
            good, rows, dead = [], [], []
            for m in msgs:
                try:
                    ev = Event.model_validate_json(m.data)
                except ValidationError as e:
                    dead.append(
                        (
                            m,
                            f"not a valid event: {e.error_count()} problem(s), first at "
                            f"{'.'.join(str(x) for x in e.errors()[0]['loc'])}",
                        )
                    )
                    continue
                good.append(m)
                rows.append(event_row(ev))
            while True:
                try:
                    if rows:
                        new = await self.store.insert_batch(rows)
                        STORED.inc(new)
                    for m, reason in dead:
                        await self.store.dead_letter(m.subject, reason, m.data[: self.dead_cap])
                        DEAD.inc()
                    self.db_ok = True
                    delay = 0.2
                    break
                except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, asyncpg.InternalClientError) as e:
                    self.db_ok = False
                    log.warning(
                        "audit: Postgres unavailable (%s); holding %d events, retry in %.1fs",
                        type(e).__name__,
                        len(rows),
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            for m in [*good, *(d[0] for d in dead)]:
                with contextlib.suppress(Exception):
                    await m.ack()
            if rows:
                self.tail.publish([_tail_event(r) for r in rows])

    async def _update_lag(self) -> None:
        with contextlib.suppress(Exception):
            info = await self._sub.consumer_info()
            self.lag = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
            LAG.set(self.lag)


def _tail_event(row: tuple[object, ...]) -> dict[str, object]:
    d = dict(zip(_KEYS, row, strict=True))
    d["data"] = json.loads(d["data"])  # type: ignore[arg-type]
    return to_event(d)


_KEYS = (
    "id",
    "type",
    "time",
    "source",
    "actor_kind",
    "actor_id",
    "connector",
    "tool",
    "profile",
    "call_id",
    "user_id",
    "status",
    "latency_ms",
    "trace_id",
    "data",
)
