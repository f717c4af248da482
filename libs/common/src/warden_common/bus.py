"""NATS plumbing: typed request/reply, queue-group responders, and the events stream.

- `request(subject, msg)` sends a frozen contract model and returns the typed result,
  or raises the typed error the responder answered with (`warden_common.rpc`'s `ask` and
  `decode_reply`, which `warden_client` shares without this module's server dependencies).
- `serve(subject, handler)` answers requests in a queue group (replicas share load);
  a handler raising `WardenError` answers its code; bad input answers `invalid`;
  anything else is logged with its traceback and answers `internal`. Requests are
  answered one at a time unless `concurrency` > 1: then up to that many run at once
  (each in a task the bus tracks and waits for on `close()`), and the rest wait their
  turn in the subscription's queue.
- Events: `emit` / `emit_event` and the acknowledged, batched publisher are the bus's
  `EventOutbox` side (`warden_common.outbox`).
- Trace context travels as a W3C `traceparent` header.
- Sizes (`warden_common.limits`): on connect the settings are checked against the server's
  `max_payload` (a start-up error names the setting); a request or an answer over the limit
  is refused with `TooLarge` (the requester gets it at once, not a timeout), never dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import MaxPayloadError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import BaseModel, ValidationError

from warden_common import otel
from warden_common.contracts.base import ErrorCode, Message, ReplyError, Subject
from warden_common.contracts.events import Service
from warden_common.errors import (
    BadInput,
    Timeout,
    TooLarge,
    Unavailable,
    WardenError,
)
from warden_common.limits import check_limits
from warden_common.metrics import NATS_HANDLE, NATS_PROBE, NATS_REQUEST, subject_label
from warden_common.natsauth import inbox_prefix
from warden_common.outbox import LINGER_S, EventOutbox
from warden_common.rpc import ask, decode_reply
from warden_common.settings import NatsSettings
from warden_common.tracing import (
    current_trace_id,
    from_traceparent,
    new_trace_id,
    parent_from_traceparent,
    set_trace_id,
    traceparent,
)

__all__ = ["Bus", "validation_message"]

log = logging.getLogger(__name__)
Req = TypeVar("Req", bound=Message)
Rep = TypeVar("Rep", bound=BaseModel)


def validation_message(e: ValidationError, limit: int = 5) -> str:
    """Say which fields are wrong (the first `limit`) without echoing their values (they may be
    secrets)."""
    parts = []
    for err in e.errors()[:limit]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "(body)"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


class Bus(EventOutbox):
    def __init__(self, settings: NatsSettings, service: Service, *, event_linger_s: float = LINGER_S) -> None:
        self.settings = settings
        self.service = service
        self.root = settings.root
        self.nc: NatsClient | None = None
        self._subs: list[Subscription] = []
        self._inflight: set[asyncio.Task[None]] = set()  # concurrent handlers being answered
        self._probe: tuple[float, str | None] = (0.0, "not probed")  # (when, reason) of the last round trip
        self._ping: asyncio.Future[float | None] | None = None
        self._init_outbox(event_linger_s)

    # -- lifecycle -------------------------------------------------------------------
    async def connect(self) -> None:
        otel.setup(str(self.service))  # spans only when OTEL_* asks for them (once per process)
        opts: dict[str, Any] = {
            "servers": self.settings.servers,
            "name": f"warden-{self.service}",
            "connect_timeout": self.settings.connect_timeout_s,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "allow_reconnect": True,
            # replies come to this user's own inbox, the only one its permissions let it read
            "inbox_prefix": inbox_prefix(self.settings.user),
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
        try:
            self.message_limit = check_limits(
                server_max_payload=self.nc.max_payload,
                max_message_bytes=self.settings.max_message_bytes,
                event_max_bytes=self.settings.event_max_bytes,
                env_prefix=self.env_prefix,
                url=self.settings.url,
            )
        except ValueError:
            nc, self.nc = self.nc, None
            await nc.close()
            raise
        await self._start_outbox()

    @property
    def env_prefix(self) -> str:
        """The prefix of this service's settings, to name them in errors."""
        return f"WARDEN_{self.service.upper()}_"

    def too_large(self, what: str, size: int) -> TooLarge:
        """The refusal of a message over the bus's limit, naming what to change."""
        return TooLarge(
            f"{what} is {size:,} bytes, over the bus limit of {self.message_limit:,} bytes (the NATS server's "
            f"max_payload, or {self.env_prefix}NATS__MAX_MESSAGE_BYTES): ask for less (a page, fewer items), "
            "or raise max_payload in the NATS server's configuration",
            size=size,
            limit=self.message_limit,
        )

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def probe(self, *, timeout: float = 1.0, cache_s: float = 2.0) -> str | None:
        """Readiness: a real round trip to the server (PING/PONG) within `timeout`, so a hung
        server (socket open, no answers) is not ready; None when fine, else the reason.

        A result is reused for `cache_s`. One PING is outstanding at a time: a probe that
        gives up leaves it waiting (up to a minute) for its PONG, and the next probe waits on
        the same one, so a hung server does not pile up PINGs (and a late PONG never meets a
        cancelled waiter)."""
        if not self.connected:
            return "not connected"
        loop = asyncio.get_running_loop()
        when, reason = self._probe
        if loop.time() - when < cache_s:
            return reason
        if self._ping is None or self._ping.done():
            self._ping = asyncio.ensure_future(self._round_trip())
        done, _ = await asyncio.wait({self._ping}, timeout=timeout)
        if not done:
            reason = f"no answer from NATS within {timeout:g}s"
            NATS_PROBE.set(-1)
        elif (rtt := self._ping.result()) is None:
            reason = "NATS round trip failed"
            NATS_PROBE.set(-1)
        else:
            reason = None
            NATS_PROBE.set(rtt)
        self._probe = (loop.time(), reason)
        return reason

    async def _round_trip(self) -> float | None:
        started = time.perf_counter()
        try:
            await self._nc.flush(timeout=60)
        except Exception:  # noqa: BLE001 - closed, reconnecting or timed out: not ready
            return None
        return time.perf_counter() - started

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
        await self._stop_outbox()
        if self._ping is not None and not self._ping.done():
            self._ping.cancel()
        if self.nc is not None:
            nc, self.nc = self.nc, None
            try:
                await asyncio.wait_for(nc.drain(), timeout=5)
            except Exception:  # noqa: BLE001 - shutdown boundary
                await nc.close()

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
        limit = timeout or self.settings.request_timeout_s
        body = msg.model_dump_json().encode()
        if len(body) > self.message_limit:
            raise self.too_large(f"the request on {subject}", len(body))
        label = subject_label(subject)
        with otel.span(f"{label} request", kind="client", attributes=_span_attrs(label)) as s:
            if s is None:
                return await self._request(subject, label, body, result, limit)
            try:
                out = await self._request(subject, label, body, result, limit)
            except WardenError as e:
                s.set_attribute("outcome", str(e.code))
                raise
            s.set_attribute("outcome", "ok")
            return out

    async def _request(self, subject: str, label: str, body: bytes, result: type[Rep], limit: float) -> Rep:
        started = time.perf_counter()
        try:
            reply = await ask(self._nc, subject, body, timeout=limit, headers=self._headers())
        except MaxPayloadError:
            raise self.too_large(f"the request on {subject}", len(body)) from None
        except NoRespondersError:
            NATS_REQUEST.labels(label, "no_responders").observe(time.perf_counter() - started)
            raise Unavailable(f"no service is answering on {subject}") from None
        except NatsTimeout:
            NATS_REQUEST.labels(label, "timeout").observe(time.perf_counter() - started)
            raise Timeout(f"no answer on {subject} within {limit}s") from None
        try:
            out = decode_reply(reply.data, result)
        except WardenError:
            NATS_REQUEST.labels(label, "error").observe(time.perf_counter() - started)
            raise
        NATS_REQUEST.labels(label, "ok").observe(time.perf_counter() - started)
        return out

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
        label = subject_label(subject)
        timers = {o: NATS_HANDLE.labels(label, o) for o in ("ok", "error", "invalid", "internal")}

        async def _cb(m: Msg) -> None:
            header = (m.headers or {}).get("traceparent")
            set_trace_id(from_traceparent(header) or new_trace_id())
            if not otel.enabled():
                await _handle(m)
                return
            with otel.span(
                f"{label} handle", kind="server", parent=parent_from_traceparent(header), attributes=_span_attrs(label)
            ) as s:
                outcome = await _handle(m)
                s.set_attribute("outcome", outcome)
                if outcome == "internal":
                    s.set_status(otel_error_status())

        async def _handle(m: Msg) -> str:
            started = time.perf_counter()
            outcome = "ok"
            try:
                req = request.model_validate_json(m.data)
                result = await (handler(req, m) if with_msg else handler(req))  # type: ignore[call-arg]
                body = b'{"result":' + result.model_dump_json().encode() + b"}"
            except ValidationError as e:
                outcome = "invalid"
                body = _error_body(BadInput(f"bad request on {m.subject}: {validation_message(e)}").to_reply())
            except WardenError as e:
                outcome = "error"
                body = _error_body(e.to_reply())
            except Exception:  # noqa: BLE001 - top of a NATS handler
                outcome = "internal"
                log.exception("handler for %s failed", m.subject)
                body = _error_body(
                    ReplyError(
                        code=ErrorCode.internal,
                        message=f"internal error in {self.service}; trace id {current_trace_id() or '-'}",
                    )
                )
            if len(body) > self.message_limit:
                # refused here, so the requester reads why at once instead of timing out
                err = self.too_large(f"the answer on {m.subject}", len(body))
                log.warning("%s", err.message)
                body = _error_body(err.to_reply())
            timers[outcome].observe(time.perf_counter() - started)
            if m.reply:
                try:
                    await m.respond(body)
                except Exception:  # noqa: BLE001 - the requester may be gone
                    log.debug("respond failed", exc_info=True)
            return outcome

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


def _span_attrs(label: str) -> dict[str, str]:
    return {"messaging.system": "nats", "messaging.destination.name": label}


def otel_error_status() -> Any:
    from opentelemetry.trace import Status, StatusCode

    return Status(StatusCode.ERROR, "internal")


def _error_body(err: ReplyError) -> bytes:
    return b'{"error":' + err.model_dump_json().encode() + b"}"
