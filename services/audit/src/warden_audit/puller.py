"""Audit's pull loop on its durable JetStream consumer: one or two pull requests outstanding,
messages buffered as they arrive and taken in bulk (`take(n)` returns as soon as one is
there, so a quiet stream costs no latency and a busy one fills batches). Where nats-py allows
it, messages are taken before it parses headers and builds a `Msg` (see `_hookable`), the
deliveries' protocol lines are read in one pass over each read (`_take`), and a batch's acks
go out as one write (`reply_all`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
import time
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.protocol import parser as nats_parser

__all__ = ["ConsumerGone", "Delivery", "Puller", "reply_all"]


class ConsumerGone(Exception):
    """The durable consumer (or its stream) is not there: re-create it."""


class Delivery:
    """One message off the stream: what ingest needs of it, and its ack subject."""

    __slots__ = ("data", "reply", "subject")

    def __init__(self, subject: str, reply: str, data: bytes) -> None:
        self.subject = subject
        self.reply = reply
        self.data = data

    @property
    def stream_seq(self) -> int | None:
        try:
            return int(Msg(None, subject=self.subject, reply=self.reply).metadata.sequence.stream)  # type: ignore[arg-type]
        except (ValueError, IndexError, nats.errors.Error):
            return None


def _hookable() -> bool:
    """Whether this nats-py hands every incoming message to `Client._process_msg(sid,
    subject, reply, data, headers)` (2.x does): then the puller takes its messages there,
    before nats-py parses their headers and builds a `Msg` and queues it for a callback
    task, which cost more than the rest of ingest's Python work per message (see
    bench/audit). With another nats-py the puller uses a plain subscription callback."""
    try:
        method = NatsClient._process_msg
        params = list(inspect.signature(method).parameters)
    except (AttributeError, TypeError, ValueError):
        return False
    return inspect.iscoroutinefunction(method) and params == ["self", "sid", "subject", "reply", "data", "headers"]


_HOOKABLE = _hookable()
_SINKS = "_warden_audit_sinks"
Sink = Any  # (subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None


def _sinks(nc: Any) -> dict[int, Sink]:
    """Per-subscription sinks on this client, installed once: in front of `_process_msg`,
    and in front of nats-py's protocol parser where that is safe (`_fast_parser`)."""
    sinks: dict[int, Sink] | None = getattr(nc, _SINKS, None)
    if sinks is None:
        sinks = {}
        process = nc._process_msg
        table = sinks

        async def _process_msg(sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
            sink = table.get(sid)
            if sink is None:
                await process(sid, subject, reply, data, headers)
            else:
                sink(subject, reply, data, headers)

        nc._process_msg = _process_msg
        _fast_parser(nc, table)
        setattr(nc, _SINKS, sinks)
    return sinks


def _take(buf: bytes, sinks: dict[int, Sink]) -> int:
    """Hand every complete MSG/HMSG at the start of `buf` that belongs to a sink to it;
    returns how many bytes that consumed. Stops at anything else (PING, INFO, a message for
    another subscription, a partial message), which nats-py's own parser then reads. One
    pass with `find` and `split` instead of nats-py's regular expressions and per-message
    coroutine: the protocol lines of a busy pull are most of what audit receives."""
    pos = 0
    n = len(buf)
    while True:
        if buf.startswith(b"HMSG ", pos):
            start, headed = pos + 5, True
        elif buf.startswith(b"MSG ", pos):
            start, headed = pos + 4, False
        else:
            return pos
        eol = buf.find(b"\r\n", start)
        if eol < 0:
            return pos
        args = buf[start:eol].split()
        k = len(args)
        try:
            if headed and k in (4, 5):
                hsize, size = int(args[-2]), int(args[-1])
            elif not headed and k in (3, 4):
                hsize, size = 0, int(args[-1])
            else:
                return pos
            sid = int(args[1])
        except ValueError:
            return pos
        sink = sinks.get(sid)
        if sink is None or not 0 <= hsize <= size:
            return pos
        body = eol + 2
        end = body + size
        if end + 2 > n:
            return pos
        reply = args[2] if k == (5 if headed else 4) else b""
        sink(args[0], reply, buf[body + hsize : end], buf[body : body + hsize] if hsize else None)
        pos = end + 2


def _fast_parser(nc: Any, sinks: dict[int, Sink]) -> None:
    """Put `_take` in front of this client's protocol parser (nats-py 2.x: `Client._ps`, a
    `Parser` with `buf`, `state` and `parse(data)`; reconnects `reset()` the same object).
    Anything `_take` does not consume goes to nats-py's parser unchanged, in order."""
    ps = getattr(nc, "_ps", None)
    idle = getattr(nats_parser, "AWAITING_CONTROL_LINE", None)
    if ps is None or idle is None or not isinstance(getattr(ps, "buf", None), bytearray):
        return
    general = ps.parse
    if not inspect.iscoroutinefunction(general):
        return

    async def parse(data: bytes = b"") -> None:
        if ps.state != idle:
            # nats-py holds the start of a message split across reads: give it just the
            # rest of that one (payload and CRLF), then read on here
            k = ps.needed + 2 - len(ps.buf)
            if not 0 < k < len(data):
                await general(data)
                return
            await general(data[:k])
            data = data[k:]
            if ps.state != idle:
                await general(data)
                return
        if ps.buf:
            ps.buf.extend(data)
            buf = bytes(ps.buf)
            data = b""
        else:
            buf = data
        pos = _take(buf, sinks)
        if pos:
            ps.buf = bytearray(buf[pos:])
            data = b""
        if data or ps.buf:
            await general(data)

    ps.parse = parse


def _batchable() -> bool:
    """Whether acks can go out as one command (nats-py 2.x: `Client._send_command(cmd)` and
    `_flush_pending()`, coroutines, and a flush queue the flusher task reads)."""
    return (
        _HOOKABLE
        and inspect.iscoroutinefunction(getattr(NatsClient, "_send_command", None))
        and inspect.iscoroutinefunction(getattr(NatsClient, "_flush_pending", None))
    )


_BATCHABLE = _batchable()


async def reply_all(nc: Any, deliveries: list[Delivery], what: bytes) -> None:
    """Ack (nak, in progress: `what`) each delivery, a publish to its reply subject, as one
    write: one `PUB` line per message, built here instead of one `publish` call each, which
    cost audit more than its COPY encoding (see bench/audit). Reply subjects come from the
    server and were split on whitespace, so they are single tokens. Raises nats errors."""
    if not deliveries:
        return
    if not (_BATCHABLE and nc.is_connected):
        for d in deliveries:
            await nc.publish(d.reply, what)
        return
    tail = b" %d\r\n%b\r\n" % (len(what), what)
    await nc._send_command(b"".join([b"PUB " + d.reply.encode() + tail for d in deliveries]))
    if nc._flush_queue is not None and nc._flush_queue.empty():  # as nats-py's own publish does
        await nc._flush_pending()


class Puller:
    """A pull subscription that keeps pull requests outstanding and buffers what arrives.

    nats-py's `fetch` waits for each message on its own future; taking the whole buffer at
    once is what lets ingest keep up (see bench/audit). `take(n)` returns as soon as at least
    one message is there, so a quiet stream costs no latency and a busy one fills batches.
    A new request for `n` goes out once less than half of what was asked for is still to
    come, so the server always has somewhere to send the next messages.
    """

    def __init__(self, nc: Any, stream: str, durable: str) -> None:
        self.nc = nc
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.inbox = nc.new_inbox()
        self._buf: list[Delivery] = []
        self._wake = asyncio.Event()
        self._requests: collections.deque[int] = collections.deque()  # still to come, per request (FIFO)
        self._outstanding = 0
        self._requested_at = 0.0
        self._expires_s = 1.0
        self._gone = False
        self._sub: Any = None

    async def start(self) -> None:
        if _HOOKABLE:
            self._sub = await self.nc.subscribe(self.inbox)
            _sinks(self.nc)[self._sub._id] = self._on_raw
        else:
            self._sub = await self.nc.subscribe(self.inbox, cb=self._on_msg, pending_msgs_limit=1_000_000)

    async def stop(self) -> None:
        if self._sub is not None:
            getattr(self.nc, _SINKS, {}).pop(self._sub._id, None)
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
            self._sub = None

    def _on_raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        if not reply:
            # a status from the server: "NATS/1.0 408 Request Timeout\r\n..."
            line = (headers or b"")[9:].split(b"\r\n", 1)[0]
            self._status(line[:3].decode(errors="replace"), line[4:].decode(errors="replace"))
            return
        self._buf.append(Delivery(subject.decode(), reply.decode(), data))
        self._got(1)

    async def _on_msg(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get("Status")
        if status:
            self._status(status, headers.get("Description") or "")
            return
        self._buf.append(Delivery(msg.subject, msg.reply, msg.data))
        self._got(1)

    def _got(self, n: int) -> None:
        self._outstanding -= n
        if self._requests:
            self._requests[0] -= n
            if self._requests[0] <= 0:
                self._requests.popleft()
        self._wake.set()

    def _status(self, status: str, description: str) -> None:
        # 408 request expired (the oldest: same expiry, served in order), 409 limits or
        # consumer deleted, 503 nobody serves that consumer
        if status == "408" and self._requests:
            self._outstanding -= self._requests.popleft()
        else:
            self._requests.clear()
            self._outstanding = 0
        if status == "503" or (status == "409" and "deleted" in description.lower()):
            self._gone = True
        self._wake.set()

    async def take(self, n: int, timeout_s: float) -> list[Delivery]:
        if self._gone:
            self._gone = False
            raise ConsumerGone
        now = time.monotonic()
        if self._outstanding > 0 and now - self._requested_at > self._expires_s + 2:
            self._requests.clear()  # the requests were lost (e.g. NATS restarted): ask again
            self._outstanding = 0
        if self._outstanding < n // 2 + 1 and len(self._buf) < n:
            self._expires_s = timeout_s
            await self.nc.publish(
                self.subject,
                json.dumps({"batch": n, "expires": int(timeout_s * 1e9)}).encode(),
                reply=self.inbox,
            )
            self._requests.append(n)
            self._outstanding += n
            self._requested_at = now
        if not self._buf:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout_s)
        if self._gone and not self._buf:
            self._gone = False
            raise ConsumerGone
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def take_now(self, n: int) -> list[Delivery]:
        """Up to `n` of what has already arrived, without waiting or asking for more."""
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def release(self) -> list[Delivery]:
        out, self._buf = self._buf, []
        return out
