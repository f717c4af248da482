"""NATS plumbing: typed request/reply, queue-group responders, and the events stream.

- `request(subject, msg)` sends a frozen contract model and returns the typed result,
  or raises the typed error the responder answered with.
- `serve(subject, handler)` answers requests in a queue group (replicas share load);
  a handler raising `WardenError` answers its code; bad input answers `invalid`;
  anything else is logged with its traceback and answers `internal`. Requests are
  answered one at a time unless `concurrency` > 1: then up to that many run at once
  (each in a task the bus tracks and waits for on `close()`), and the rest wait their
  turn in the subscription's queue.
- `emit(event)` queues an event; a background publisher sends it to JetStream with
  `Nats-Msg-Id` = event id (de-duplicated in the stream's window), retrying until the
  stream acknowledges it. `close()` flushes what is queued before draining. The
  publisher lingers a moment (2 ms) after an event arrives, then sends what has queued
  up as one pipelined batch (one socket write, acks awaited together) instead of one
  round trip per event: a call's events and its reply share writes. Each event's reply
  subject is a token under one ack inbox of this bus, counted down per batch (nats-py's
  `publish_async` made a future, a task wake-up and a parsed PubAck per event). An event
  leaves the outbox only once the stream has acknowledged it; the unacknowledged ones of a
  batch (an API error, no stream, no ack within 5 s) are sent again, in order, until it does.
- `emit_event(type, ...)` is `emit(new_event(...))` for hot paths: the envelope goes straight
  to JSON (`contracts.events.event_json`).
- Trace context travels as a W3C `traceparent` header.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats
import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ValidationError

from warden_common.contracts.base import ErrorCode, Message, Reply, ReplyError, Subject
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
from warden_common.errors import (
    BadInput,
    Timeout,
    Unavailable,
    WardenError,
    from_reply_error,
)
from warden_common.settings import NatsSettings
from warden_common.tracing import (
    current_trace_id,
    from_traceparent,
    new_trace_id,
    set_trace_id,
    traceparent,
)

__all__ = ["Bus", "validation_message"]

log = logging.getLogger(__name__)
Req = TypeVar("Req", bound=Message)
Rep = TypeVar("Rep", bound=BaseModel)
_OUTBOX_MAX = 100_000
_BATCH_MAX = 256  # events per pipelined publish
_ACK_TIMEOUT_S = 5.0
_LINGER_S = 0.002  # gather the events of calls in flight into one batch
_Encoded = tuple[str, bytes, dict[str, str]]  # an event as published: subject, JSON, headers


def validation_message(e: ValidationError, limit: int = 5) -> str:
    """Say which fields are wrong (the first `limit`) without echoing their values (they may be
    secrets)."""
    parts = []
    for err in e.errors()[:limit]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "(body)"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


class Bus:
    def __init__(self, settings: NatsSettings, service: Service, *, event_linger_s: float = _LINGER_S) -> None:
        self.settings = settings
        self.event_linger_s = event_linger_s
        self.service = service
        self.root = settings.root
        self.nc: NatsClient | None = None
        # Events, or events already encoded (subject, JSON, headers) by `emit_event`
        self._outbox: asyncio.Queue[Event | _Encoded] = asyncio.Queue(maxsize=_OUTBOX_MAX)
        self._publisher: asyncio.Task[None] | None = None
        self._subs: list[Subscription] = []
        self._inflight: set[asyncio.Task[None]] = set()  # concurrent handlers being answered
        self.events_stream = events_stream_name(self.root)
        self._events_prefix = events_wildcard(self.root)[:-1]  # "<root>.v1.events."
        self._ack_prefix = ""
        self._ack_seq = 0
        self._waiting: dict[str, tuple[_Acks, int]] = {}  # reply subject -> (its batch, index)

    # -- lifecycle -------------------------------------------------------------------
    async def connect(self) -> None:
        opts: dict[str, Any] = {
            "servers": [self.settings.url],
            "name": f"warden-{self.service}",
            "connect_timeout": self.settings.connect_timeout_s,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "allow_reconnect": True,
        }
        if self.settings.user:
            opts["user"] = self.settings.user
            opts["password"] = self.settings.password.get_secret_value() if self.settings.password else ""

        async def _err(e: Exception) -> None:
            log.warning("nats: %s", e)

        opts["error_cb"] = _err
        try:
            self.nc = await nats.connect(**opts)
        except (OSError, nats.errors.NoServersError, NatsTimeout) as e:
            raise Unavailable(f"cannot reach NATS at {self.settings.url}: {type(e).__name__}") from None
        # the stream's acks of published events: one subscription, one token per event
        self._ack_prefix = self.nc.new_inbox() + "."
        await self.nc.subscribe(self._ack_prefix + "*", cb=self._on_ack, pending_msgs_limit=65536)
        self._publisher = asyncio.create_task(self._publish_loop(), name=f"{self.service}-event-publisher")

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def ensure_events_stream(self) -> None:
        """Create (or update) the events stream. Idempotent; any service may call it."""
        js = self._nc.jetstream()
        cfg = StreamConfig(
            name=self.events_stream,
            subjects=[events_wildcard(self.root)],
            duplicate_window=self.settings.dedup_window_s,
            max_age=7 * 24 * 3600,
        )
        try:
            await js.stream_info(self.events_stream)
            await js.update_stream(cfg)
        except NotFoundError:
            await js.add_stream(cfg)

    async def close(self) -> None:
        for sub in self._subs:
            try:
                await sub.drain()
            except Exception:  # noqa: BLE001 - shutdown boundary
                log.debug("drain failed", exc_info=True)
        self._subs.clear()
        if self._inflight:
            _, late = await asyncio.wait(set(self._inflight), timeout=10)
            for t in late:
                t.cancel()
        if self._publisher is not None:
            try:
                await asyncio.wait_for(self._outbox.join(), timeout=5)
            except TimeoutError:
                log.error(
                    "shutdown: %d events not yet acknowledged by the stream",
                    self._outbox.qsize(),
                )
            self._publisher.cancel()
            try:
                await self._publisher
            except asyncio.CancelledError:
                pass
            self._publisher = None
        if self.nc is not None:
            nc, self.nc = self.nc, None
            try:
                await asyncio.wait_for(nc.drain(), timeout=5)
            except Exception:  # noqa: BLE001 - shutdown boundary
                await nc.close()

    @property
    def _nc(self) -> NatsClient:
        if self.nc is None:
            raise Unavailable("not connected to NATS")
        return self.nc

    # -- request / reply ---------------------------------------------------------------
    def _headers(self) -> dict[str, str] | None:
        tid = current_trace_id()
        return {"traceparent": traceparent(tid)} if tid else None

    async def request(self, subject: Subject[Req, Rep], msg: Req, *, timeout: float | None = None) -> Rep:
        return await self.request_to(subject.on(self.root), msg, subject.result, timeout=timeout)

    async def request_to(
        self,
        subject: str,
        msg: Message,
        result: type[Rep],
        *,
        timeout: float | None = None,
    ) -> Rep:
        try:
            reply = await self._nc.request(
                subject,
                msg.model_dump_json().encode(),
                timeout=timeout or self.settings.request_timeout_s,
                headers=self._headers(),
            )
        except NoRespondersError:
            raise Unavailable(f"no service is answering on {subject}") from None
        except NatsTimeout:
            raise Timeout(f"no answer on {subject} within {timeout or self.settings.request_timeout_s}s") from None
        return decode_reply(reply.data, result)

    async def serve(
        self,
        subject: Subject[Req, Rep],
        handler: Callable[[Req], Awaitable[Rep]],
        *,
        queue: str | None = None,
        concurrency: int = 1,
    ) -> Subscription:
        return await self.serve_on(
            subject.on(self.root), subject.request, handler, queue=queue, concurrency=concurrency
        )

    async def serve_on(
        self,
        subject: str,
        request: type[Req],
        handler: Callable[[Req], Awaitable[Rep]],
        *,
        queue: str | None = None,
        with_msg: bool = False,
        concurrency: int = 1,
    ) -> Subscription:
        async def _cb(m: Msg) -> None:
            set_trace_id(from_traceparent((m.headers or {}).get("traceparent")) or new_trace_id())
            try:
                req = request.model_validate_json(m.data)
                result = await (handler(req, m) if with_msg else handler(req))  # type: ignore[call-arg]
                body = b'{"result":' + result.model_dump_json().encode() + b"}"
            except ValidationError as e:
                body = _error_body(BadInput(f"bad request on {m.subject}: {validation_message(e)}").to_reply())
            except WardenError as e:
                body = _error_body(e.to_reply())
            except Exception:  # noqa: BLE001 - top of a NATS handler
                log.exception("handler for %s failed", m.subject)
                body = _error_body(
                    ReplyError(
                        code=ErrorCode.internal,
                        message=f"internal error in {self.service}; trace id {current_trace_id() or '-'}",
                    )
                )
            if m.reply:
                try:
                    await m.respond(body)
                except Exception:  # noqa: BLE001 - the requester may be gone
                    log.debug("respond failed", exc_info=True)

        cb = _cb
        if concurrency > 1:
            slots = asyncio.Semaphore(concurrency)

            def _done(t: asyncio.Task[None]) -> None:
                self._inflight.discard(t)
                slots.release()

            async def _spawn(m: Msg) -> None:
                await slots.acquire()  # at the limit, the next request waits in the subscription
                t = asyncio.create_task(_cb(m))
                self._inflight.add(t)
                t.add_done_callback(_done)

            cb = _spawn
        sub = await self._nc.subscribe(
            subject,
            queue=queue or f"warden-{self.service}",
            cb=cb,
            pending_msgs_limit=65536,
        )
        self._subs.append(sub)
        await self._nc.flush(timeout=5)  # the server knows our interest before we say we serve
        return sub

    async def listen(self, subject: str, cb: Callable[[Msg], Awaitable[None]]) -> Subscription:
        """A plain (non-queue) subscription: every replica sees every message (cache invalidation)."""
        sub = await self._nc.subscribe(subject, cb=cb)
        self._subs.append(sub)
        await self._nc.flush(timeout=5)  # the server knows our interest before we say we serve
        return sub

    # -- events -----------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        """Queue an event for the stream. Never blocks the caller; never drops silently."""
        if event.trace_id is None and (tid := current_trace_id()):
            event = event.model_copy(update={"trace_id": tid})
        self._queue(event, event.id, event.type)

    def _queue(self, item: Event | _Encoded, eid: str, type: str) -> None:
        try:
            self._outbox.put_nowait(item)
        except asyncio.QueueFull:
            log.error("event outbox full (%d); event %s of type %s not queued", _OUTBOX_MAX, eid, type)

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
        headers = {"Nats-Msg-Id": eid}
        if tid:
            headers["traceparent"] = traceparent(tid)
        self._queue((f"{self._events_prefix}{self.service}.{type}", payload, headers), eid, type)

    def new_event(self, type: str, **kw: Any) -> Event:
        if "trace_id" not in kw and (tid := current_trace_id()):
            kw["trace_id"] = tid  # saves emit() a copy of the event
        return Event(type=type, source=self.service, **kw)

    async def publish_event_now(self, event: Event) -> None:
        js = self._nc.jetstream()
        headers = {"Nats-Msg-Id": event.id}
        if event.trace_id:
            headers["traceparent"] = traceparent(event.trace_id)
        await js.publish(
            events_subject(self.root, event),
            event.model_dump_json().encode(),
            headers=headers,
            timeout=5,
        )

    def _encoded(self, event: Event) -> _Encoded:
        headers = {"Nats-Msg-Id": event.id}
        if event.trace_id:
            headers["traceparent"] = traceparent(event.trace_id)
        return events_subject(self.root, event), event.model_dump_json().encode(), headers

    async def _publish_batch(self, batch: list[_Encoded]) -> list[int]:
        """Publish a batch without waiting between messages; the indexes not acknowledged.
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
                await self._nc.publish(subject, payload, reply=reply, headers=headers)
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
        return sorted(failed)

    async def _on_ack(self, m: Msg) -> None:
        got = self._waiting.pop(m.subject, None)
        if got is None:
            return  # a late ack of an attempt already given up on (the stream dedups the resend)
        acks, i = got
        if not _stored(m.data):
            acks.failed.append(i)
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
            pending = [self._encoded(e) if isinstance(e, Event) else e for e in events]
            delay = 0.05
            while True:
                failed = await self._publish_batch(pending)
                if not failed:
                    break
                log.warning(
                    "%d of %d events not yet stored; retrying in %.2fs (the stream dedups by id)",
                    len(failed),
                    len(pending),
                    delay,
                )
                pending = [pending[i] for i in failed]
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            for _ in events:
                self._outbox.task_done()

    @property
    def outbox_size(self) -> int:
        return self._outbox.qsize()


def _error_body(err: ReplyError) -> bytes:
    return b'{"error":' + err.model_dump_json().encode() + b"}"


class _Acks:
    """The stream's acks of one published batch, counted down by `Bus._on_ack`."""

    __slots__ = ("done", "failed", "left")

    def __init__(self, n: int) -> None:
        self.left = n
        self.failed: list[int] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


def _stored(data: bytes) -> bool:
    """A JetStream PubAck (`{"stream": …, "seq": n}`, perhaps `"duplicate": true`), not an
    API error and not a no-responders status (empty body)."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and "error" not in doc and isinstance(doc.get("seq"), int)


_REPLIES: dict[type[BaseModel], type[Reply[Any]]] = {}


def decode_reply(data: bytes, result: type[Rep]) -> Rep:
    # one pass through pydantic-core for a well-formed reply (a quarter of the time of
    # json.loads + validate); anything else is worded by the checks below
    reply_model = _REPLIES.get(result)
    if reply_model is None:
        reply_model = _REPLIES[result] = Reply[result]  # type: ignore[valid-type]
    try:
        r = reply_model.model_validate_json(data)
    except ValidationError:
        r = None
    if r is not None:
        if r.error is not None:
            raise from_reply_error(r.error)
        if r.result is not None:
            return r.result  # type: ignore[no-any-return]
    try:
        doc = json.loads(data)
    except ValueError:
        raise Unavailable("malformed reply from a Warden service") from None
    if isinstance(doc, dict) and doc.get("error") is not None:
        raise from_reply_error(ReplyError.model_validate(doc["error"]))
    if not isinstance(doc, dict) or "result" not in doc:
        raise Unavailable("malformed reply from a Warden service")
    return result.model_validate(doc["result"])
