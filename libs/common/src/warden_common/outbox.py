"""The events side of the bus: the outbox and its publisher (`Bus` is an `EventOutbox`).

- `emit(event)` queues an event; a background publisher sends it to JetStream with
  `Nats-Msg-Id` = event id (de-duplicated in the stream's window), retrying until the
  stream acknowledges it. `Bus.close()` flushes what is queued before draining. The
  publisher lingers a moment (2 ms) after an event arrives, then sends what has queued
  up as one pipelined batch (one socket write, acks awaited together) instead of one
  round trip per event: a call's events and its reply share writes. Each event's reply
  subject is a token under one ack inbox of this bus, counted down per batch (nats-py's
  `publish_async` made a future, a task wake-up and a parsed PubAck per event). An event
  leaves the outbox only once the stream has acknowledged it; the unacknowledged ones of a
  batch (an API error, no stream, no ack within 5 s) are sent again, in order, until it does.
- No event is larger than the bus takes (`warden_common.limits`): large values in its `data`
  are stored truncated, with their size and SHA-256. An event that cannot be published at
  all (still too large, not encodable, refused by the stream as too large) is dead-lettered:
  an `event.dead_lettered` event with the same id, its type, refs, size, SHA-256 and the
  reason takes its place, the error is logged (no payload) and counted, and the queue moves
  on. Nothing one caller sends can hold back the events of other calls.
- Depth and the age of the oldest event not yet stored are metrics
  (`warden_event_outbox_depth`, `warden_event_outbox_oldest_age_seconds`); the `events`
  readiness check fails when that age passes `NATS__EVENT_STALL_S`.
- `emit_event(type, ...)` is `emit(new_event(...))` for hot paths: the envelope goes straight
  to JSON (`contracts.events.event_json`).
- With `NATS__EVENT_JOURNAL_DIR` set, every event is also written to a journal on disk when it is
  emitted (already bounded) and forgotten once stored (`warden_common.journal`): a process killed
  with events in its outbox loses none; its next start, or a live replica on the same directory
  (checked every `NATS__EVENT_JOURNAL_SCAN_S`), publishes them. A clean stop that cannot store
  everything within 5 s leaves the rest there too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import MaxPayloadError
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge

from warden_common.contracts.events import (
    Actor,
    Event,
    EventRefs,
    EventType,
    Service,
    event_json,
    events_stream_name,
    events_subject,
    events_wildcard,
)
from warden_common.deadletter import dead_letter_event
from warden_common.errors import Unavailable
from warden_common.journal import EventJournal, Record
from warden_common.limits import bound_event
from warden_common.settings import NatsSettings
from warden_common.tracing import current_trace_id, traceparent

__all__ = ["EventOutbox"]

log = logging.getLogger(__name__)
_OUTBOX_MAX = 100_000
_BATCH_MAX = 256  # events per pipelined publish
_ACK_TIMEOUT_S = 5.0
LINGER_S = 0.002  # gather the events of calls in flight into one batch
_Encoded = Record  # an event as published: subject, JSON, headers
# (when it was queued, monotonic; the event; its journal segment, or _RAW / _FITTED when not in one)
_Queued = tuple[float, Event | _Encoded, int]
_RAW = -1  # not fitted to the limits yet (no journal)
_FITTED = -2  # fitted, in memory only (the journal refused it)
# JetStream API errors after which sending the same message again cannot succeed
_REFUSED_ERR_CODES = {10054: "too_large"}  # "message size exceeds maximum allowed"

_DEPTH = Gauge("warden_event_outbox_depth", "events queued or in flight, not yet stored by the stream", ["service"])
_AGE = Gauge(
    "warden_event_outbox_oldest_age_seconds",
    "how long the oldest event not yet stored by the stream has waited (0 when none)",
    ["service"],
)
_DEAD = Counter(
    "warden_events_dead_lettered_total",
    "events that could not be published and were replaced by an event.dead_lettered",
    ["service", "reason"],
)
_TRUNCATED = Counter("warden_events_truncated_total", "events stored with large values truncated", ["service"])
_ADOPTED = Counter(
    "warden_events_adopted_total",
    "events found in the journal of a process that stopped before they were stored, published by this one",
    ["service"],
)
_JOURNAL_ERRORS = Counter(
    "warden_event_journal_errors_total", "events the journal could not write (kept in memory only)", ["service"]
)
_JOURNAL_BYTES = Gauge("warden_event_journal_bytes", "bytes in this process's event journal", ["service"])


class EventOutbox:
    """Events queued for the stream, published in acknowledged batches. Needs `nc`,
    `settings`, `service` and `root` (set by `Bus`)."""

    nc: NatsClient | None
    settings: NatsSettings
    service: Service
    root: str

    def _init_outbox(self, event_linger_s: float) -> None:
        self.event_linger_s = event_linger_s
        # Events, or events already encoded (subject, JSON, headers) by `emit_event`, with the
        # time each was queued
        self._outbox: asyncio.Queue[_Queued] = asyncio.Queue(maxsize=_OUTBOX_MAX)
        self._inflight_since: float | None = None  # queued time of the batch being published
        self._inflight_n = 0
        # the largest message this bus sends (set from the server's max_payload on connect)
        self.message_limit = (self.settings.max_message_bytes or 1024 * 1024) - 4096
        _DEPTH.labels(self.service).set_function(lambda: self.outbox_depth)
        _AGE.labels(self.service).set_function(self.oldest_event_age)
        self._publisher: asyncio.Task[None] | None = None
        self.events_stream = events_stream_name(self.root)
        self._events_prefix = events_wildcard(self.root)[:-1]  # "<root>.v1.events."
        self._ack_prefix = ""
        self._ack_seq = 0
        self._waiting: dict[str, tuple[_Acks, int]] = {}  # reply subject -> (its batch, index)
        jdir = self.settings.event_journal_dir
        self._journal = EventJournal(jdir, str(self.service)) if jdir is not None else None
        self._journal_scan: asyncio.Task[None] | None = None
        if self._journal is not None:
            journal = self._journal
            _JOURNAL_BYTES.labels(self.service).set_function(lambda: journal.size_bytes)

    async def _start_outbox(self) -> None:
        # the stream's acks of published events: one subscription, one token per event
        self._ack_prefix = self._nc.new_inbox() + "."
        await self._nc.subscribe(self._ack_prefix + "*", cb=self._on_ack, pending_msgs_limit=65536)
        if self._journal is not None and not self._journal.is_open:
            self._journal.open()
            self._adopt_journals()
            self._journal_scan = asyncio.create_task(self._scan_journals(), name=f"{self.service}-journal-scan")
        self._publisher = asyncio.create_task(self._publish_loop(), name=f"{self.service}-event-publisher")

    async def _stop_outbox(self) -> None:
        """Wait (up to 5 s) for what is queued to be acknowledged, then stop the publisher."""
        if self._publisher is None:
            return
        try:
            await asyncio.wait_for(self._outbox.join(), timeout=5)
        except TimeoutError:
            log.error("shutdown: %d events not yet acknowledged by the stream", self._outbox.qsize())
        for task in (self._publisher, self._journal_scan):
            if task is None:
                continue
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._publisher = self._journal_scan = None
        if self._journal is not None and self._journal.is_open:
            self._journal.close()  # what is still waiting stays on disk for the next start

    def _adopt_journals(self) -> int:
        """Queue the events in the journals of this service's dead processes (writing them to
        this one's journal first), then remove those journals."""
        if self._journal is None or not self._journal.is_open:
            return 0
        n = 0
        for path, fd, records in self._journal.adopt():
            for rec in records:
                self._queue(rec, rec[2].get("Nats-Msg-Id", "?"), "(adopted)")
            self._journal.release(path, fd)
            n += len(records)
            if records:
                log.warning(
                    "published %d events from %s, left by a process that stopped first", len(records), path.name
                )
        if n:
            _ADOPTED.labels(self.service).inc(n)
        return n

    async def _scan_journals(self) -> None:
        while True:
            await asyncio.sleep(self.settings.event_journal_scan_s)
            try:
                self._adopt_journals()
            except Exception:  # noqa: BLE001 - the scan must outlive one bad directory listing
                log.exception("looking for journals to adopt failed")

    @property
    def _nc(self) -> NatsClient:
        if self.nc is None:
            raise Unavailable("not connected to NATS")
        return self.nc

    async def ensure_events_stream(self) -> None:
        """Create (or update) the events stream. Idempotent; any service may call it."""
        js = self._nc.jetstream()
        cfg = StreamConfig(
            name=self.events_stream,
            subjects=[events_wildcard(self.root)],
            duplicate_window=self.settings.dedup_window_s,
            max_age=7 * 24 * 3600,
            num_replicas=self.settings.stream_replicas,
        )
        try:
            await js.stream_info(self.events_stream)
            await js.update_stream(cfg)
        except NotFoundError:
            await js.add_stream(cfg)

    def emit(self, event: Event) -> None:
        """Queue an event for the stream. Never blocks the caller; never drops silently."""
        if event.trace_id is None and (tid := current_trace_id()):
            event = event.model_copy(update={"trace_id": tid})
        self._queue(event, event.id, event.type)

    def _queue(self, item: Event | _Encoded, eid: str, type: str) -> None:
        if self._outbox.full():
            log.error("event outbox full (%d); event %s of type %s not queued", _OUTBOX_MAX, eid, type)
            return
        seg = _RAW
        if self._journal is not None and self._journal.is_open:
            item = self._fit(item)  # what is journaled is what will be published
            try:
                seg = self._journal.append(item)
            except OSError as e:
                seg = _FITTED
                _JOURNAL_ERRORS.labels(self.service).inc()
                log.error("event %s of type %s not written to the journal (%s); kept in memory", eid, type, e)
        self._outbox.put_nowait((time.monotonic(), item, seg))

    def emit_event(
        self,
        type: EventType,
        *,
        actor: Actor | None,
        refs: EventRefs,
        status: str | None = None,
        latency_ms: float | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """`emit(new_event(...))` for a hot path: the envelope goes straight to JSON
        (`contracts.events.event_json`, ~4 µs instead of ~19 µs for the model and its dump);
        whatever that cannot prove takes the model."""
        tid = current_trace_id()
        try:
            eid, payload = event_json(
                type,
                self.service,
                actor=actor,
                refs=refs,
                status=status,
                latency_ms=latency_ms,
                data=data,
                trace_id=tid,
            )
        except (TypeError, ValueError):
            self.emit(
                self.new_event(type, actor=actor, refs=refs, status=status, latency_ms=latency_ms, data=data or {})
            )
            return
        self._queue((f"{self._events_prefix}{self.service}.{type}", payload, _headers(eid, tid)), eid, type)

    def new_event(self, type: str, **kw: Any) -> Event:
        if "trace_id" not in kw and (tid := current_trace_id()):
            kw["trace_id"] = tid  # saves emit() a copy of the event
        return Event(type=type, source=self.service, **kw)

    async def publish_event_now(self, event: Event) -> None:
        subject, payload, headers = self._fit(event)
        await self._nc.jetstream().publish(subject, payload, headers=headers, timeout=5)

    def _encoded(self, event: Event) -> _Encoded:
        return events_subject(self.root, event), event.model_dump_json().encode(), _headers(event.id, event.trace_id)

    # -- limits and dead letters -------------------------------------------------------
    def _fit(self, item: Event | _Encoded) -> _Encoded:
        """The event as published: within the size limits (large values truncated), or the
        dead letter that stands for it."""
        try:
            encoded = self._encoded(item) if isinstance(item, Event) else item
        except Exception as e:  # noqa: BLE001 - an event that cannot be encoded must not stop the others
            eid = item.id if isinstance(item, Event) else "?"
            return self._dead_letter(item, f"malformed: {type(e).__name__}", eid=eid)
        subject, payload, headers = encoded
        fitted = bound_event(payload, value_max=self.settings.event_value_max_bytes, event_max=self._event_limit)
        if fitted is None:
            return self._dead_letter(encoded, "too_large")
        if fitted is not payload:
            _TRUNCATED.labels(self.service).inc()
        return subject, fitted, headers

    @property
    def _event_limit(self) -> int:
        return min(self.settings.event_max_bytes, self.message_limit)

    def _dead_letter(self, item: Event | _Encoded, reason: str, *, eid: str | None = None) -> _Encoded:
        """A small `event.dead_lettered` event with the id of the one that cannot be published
        (`warden_common.deadletter`); logged (no payload) and counted."""
        dead, eid = dead_letter_event(item, reason, service=self.service, limit=self._event_limit, eid=eid)
        _DEAD.labels(self.service, reason.partition(":")[0]).inc()
        log.error(
            "event %s of type %s dead-lettered (%s): %d bytes; the limit is %d",
            eid or "-",
            dead.data["event_type"],
            reason,
            dead.data["bytes"],
            self._event_limit,
        )
        return self._encoded(dead)

    async def _publish_batch(self, batch: list[_Encoded]) -> tuple[list[int], dict[int, str]]:
        """Publish a batch without waiting between messages; the indexes not acknowledged (to
        send again), and those that cannot be stored whatever is tried (with the reason).
        Each message's reply subject is a fresh token under this bus's ack inbox; `_on_ack`
        counts the stream's acks down and wakes this batch once (no future, task or parsed
        PubAck object per event, which nats-py's `publish_async` makes: ~half the CPU an
        event cost the proxy)."""
        acks = _Acks(len(batch))
        replies: list[str] = []
        try:
            for i, (subject, payload, headers) in enumerate(batch):
                self._ack_seq += 1
                reply = f"{self._ack_prefix}{self._ack_seq}"
                self._waiting[reply] = (acks, i)
                replies.append(reply)
                try:
                    await self._nc.publish(subject, payload, reply=reply, headers=headers)
                except MaxPayloadError:  # the client's check of the server's max_payload
                    self._waiting.pop(reply, None)
                    acks.refused[i] = "too_large"
                    acks.left -= 1
        except asyncio.CancelledError:
            for r in replies:
                self._waiting.pop(r, None)
            raise
        except Exception as e:  # noqa: BLE001 - what was not sent is retried
            log.warning("events not yet sent (%s)", type(e).__name__)
            if replies:  # the one whose publish raised was not sent
                self._waiting.pop(replies.pop(), None)
            acks.left -= len(batch) - len(replies)
        if acks.left > 0:
            try:
                async with asyncio.timeout(_ACK_TIMEOUT_S):
                    await acks.done
            except TimeoutError:
                pass
        failed = set(acks.failed)
        for i, r in enumerate(replies):
            if self._waiting.pop(r, None) is not None:  # no ack in time
                failed.add(i)
        failed.update(range(len(replies), len(batch)))
        failed.difference_update(acks.refused)
        return sorted(failed), acks.refused

    async def _on_ack(self, m: Msg) -> None:
        got = self._waiting.pop(m.subject, None)
        if got is None:
            return  # a late ack of an attempt already given up on (the stream dedups the resend)
        acks, i = got
        verdict = _verdict(m.data)
        if verdict == "retry":
            acks.failed.append(i)
        elif verdict != "stored":
            acks.refused[i] = verdict
        acks.left -= 1
        if acks.left <= 0 and not acks.done.done():
            acks.done.set_result(None)

    async def _publish_loop(self) -> None:
        while True:
            first = await self._outbox.get()
            if self.event_linger_s > 0 and self._outbox.empty():
                await asyncio.sleep(self.event_linger_s)
            events = [first]
            while len(events) < _BATCH_MAX and not self._outbox.empty():
                events.append(self._outbox.get_nowait())
            self._inflight_since, self._inflight_n = first[0], len(events)
            try:
                await self._publish_all(
                    [self._fit(e) if seg == _RAW or isinstance(e, Event) else e for _, e, seg in events]
                )
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the publisher's top: it must outlive any one batch
                log.exception("publishing %d events failed; they are dropped", len(events))
                _DEAD.labels(self.service, "internal").inc(len(events))
            finally:
                self._inflight_since, self._inflight_n = None, 0
            for _, _, seg in events:
                if seg >= 0 and self._journal is not None:
                    self._journal.done(seg)
                self._outbox.task_done()

    async def _publish_all(self, pending: list[_Encoded]) -> None:
        """Send until each is stored: the failed ones again (backing off up to 2 s), those the
        stream refuses for good once more as their dead letters."""
        delay = 0.05
        dead_lettered: set[str] = set()  # ids sent as dead letters already: never a second time
        while True:
            failed, refused = await self._publish_batch(pending)
            for i, reason in refused.items():
                eid = pending[i][2].get("Nats-Msg-Id", "")
                if eid in dead_lettered:
                    log.error("the dead letter of event %s was refused too (%s); dropped", eid, reason)
                    continue
                dead_lettered.add(eid)
                failed.append(i)
                pending[i] = self._dead_letter(pending[i], reason)
            if not failed:
                return
            failed.sort()
            if len(failed) > len(refused):
                log.warning(
                    "%d of %d events not yet stored; retrying in %.2fs (the stream dedups by id)",
                    len(failed),
                    len(pending),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            pending = [pending[i] for i in failed]

    @property
    def outbox_size(self) -> int:
        """Events queued, not yet taken by the publisher."""
        return self._outbox.qsize()

    @property
    def outbox_depth(self) -> int:
        """Events queued or being published: not yet stored by the stream."""
        return self._outbox.qsize() + self._inflight_n

    def oldest_event_age(self) -> float:
        """Seconds the oldest event not yet stored by the stream has waited; 0 when none."""
        oldest = self._inflight_since
        if oldest is None:
            head = _head(self._outbox)
            if head is None:
                return 0.0
            oldest = head[0]
        return max(0.0, time.monotonic() - oldest)

    async def events_check(self) -> str | None:
        """The `events` readiness check: not ready when events have stopped reaching the stream."""
        age = self.oldest_event_age()
        if age > self.settings.event_stall_s:
            return (
                f"events are not reaching the stream: the oldest of {self.outbox_depth} has waited {age:.0f}s "
                f"(more than NATS__EVENT_STALL_S, {self.settings.event_stall_s:g}s)"
            )
        return None


class _Acks:
    """The stream's acks of one published batch, counted down by `EventOutbox._on_ack`."""

    __slots__ = ("done", "failed", "left", "refused")

    def __init__(self, n: int) -> None:
        self.left = n
        self.failed: list[int] = []
        self.refused: dict[int, str] = {}  # index -> why it can never be stored
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


def _verdict(data: bytes) -> str:
    """ "stored" for a JetStream PubAck (`{"stream": …, "seq": n}`, perhaps `"duplicate": true`);
    "retry" for a no-responders status (empty body), a transient API error or anything else;
    a reason (`too_large`) for an API error that sending again cannot mend."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return "retry"
    if not isinstance(doc, dict):
        return "retry"
    err = doc.get("error")
    if isinstance(err, dict):
        return _REFUSED_ERR_CODES.get(err.get("err_code"), "retry")  # type: ignore[arg-type]
    return "stored" if err is None and isinstance(doc.get("seq"), int) else "retry"


def _head(q: asyncio.Queue[_Queued]) -> _Queued | None:
    """The queue's first item without taking it (asyncio.Queue keeps its items in a deque)."""
    items = getattr(q, "_queue", None)
    return items[0] if items else None


def _headers(event_id: str, trace_id: str | None) -> dict[str, str]:
    headers = {"Nats-Msg-Id": event_id}
    if trace_id:
        headers["traceparent"] = traceparent(trace_id)
    return headers
