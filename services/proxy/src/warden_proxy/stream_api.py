"""`POST /v1/tools/{name}/call/stream`: the HTTP tool call for consoles and scripts, as
Server-Sent Events, so a long call shows what it is doing; `GET /v1/calls/{stream}/stream`
resumes it after a dropped connection.

Events, in order: `started` ({tool, stream}: the call id is not known before the pipeline
assigns it, so this carries the tool and the stream's id), any number of `progress`
({progress, total, message}) and `consent` ({url, connector}: a per-user connection is
needed; the call waits for it, then goes on), then exactly one `result` (the tool result) or
`error` ({code, message}). A comment line every 15 s keeps idle proxies from closing the stream.
Same authentication, pipeline, checks and audit as the MCP endpoint and the plain HTTP call.

Resumable (as the MCP spec describes for its SSE streams): every event has an `id` (1, 2, …
within the stream) and the first carries `retry:` (`SSE_RETRY_MS`). The proxy keeps a call's
events (at most `_MAX_EVENTS`, progress dropped first) in this replica's memory; a client whose
connection dropped sends `GET /v1/calls/{stream}/stream` with `Last-Event-ID` and the same
agent key, and gets what it missed, then the rest until the result. A call nobody listens to
for `STREAM_RESUME_S` is cancelled; a finished call's events are kept that long after its last
listener left. Another key, an unknown or expired stream: 404. Per replica: a resume must reach
the replica that runs the call (sticky sessions, as for /mcp sessions).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Body, Depends, Header, Request
from fastapi.responses import StreamingResponse
from warden_common.contracts import ErrorCode
from warden_common.errors import BadInput, NotFound, WardenError
from warden_common.tracing import begin_call

from warden_proxy.agents import Principal, request_principal
from warden_proxy.service import CallPipeline

__all__ = ["CallStreams", "build_stream_router"]

_KEEPALIVE_S = 15.0
_MAX_EVENTS = 1000  # per call; beyond that the oldest progress events are dropped
_MAX_STREAMS = 10_000  # calls kept for resuming, per replica; the oldest finished go first
_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def _sse(event: str, data: Any, event_id: int, retry_ms: int | None = None) -> bytes:
    retry = f"retry: {retry_ms}\n" if retry_ms is not None else ""
    return f"id: {event_id}\n{retry}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _owner(p: Principal) -> str:
    return f"{p.kind}:{p.id}:{p.profile}:{p.user or ''}"


class _Call:
    """One streamed call: its events so far, who may read them, and its task."""

    def __init__(self, owner: str, retry_ms: int) -> None:
        self.owner = owner
        self.retry_ms = retry_ms
        self.events: list[tuple[int, str, bytes]] = []  # (id, kind, wire form)
        self.next_id = 1
        self.done = False
        self.changed = asyncio.Event()
        self.listeners = 0
        self.idle_since: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.reaper: asyncio.TimerHandle | None = None

    def add(self, kind: str, data: Any) -> None:
        eid = self.next_id
        self.next_id += 1
        self.events.append((eid, kind, _sse(kind, data, eid, self.retry_ms if eid == 1 else None)))
        if len(self.events) > _MAX_EVENTS:
            for i, (_, k, _) in enumerate(self.events):
                if k == "progress":
                    del self.events[i]
                    break
            else:
                del self.events[1]  # keep `started`
        self.changed.set()
        self.changed = asyncio.Event()


class CallStreams:
    """The streamed calls of this replica, kept for resuming (bounded, expiring)."""

    def __init__(self, *, resume_s: float, retry_ms: int) -> None:
        self.resume_s = resume_s
        self.retry_ms = retry_ms
        self._calls: OrderedDict[str, _Call] = OrderedDict()

    def open(self, principal: Principal) -> tuple[str, _Call]:
        self._trim()
        sid = os.urandom(16).hex()
        call = _Call(_owner(principal), self.retry_ms)
        self._calls[sid] = call
        return sid, call

    def find(self, sid: str, principal: Principal) -> _Call | None:
        call = self._calls.get(sid)
        if call is None or call.owner != _owner(principal):
            return None  # another key's stream is as unknown as a missing one
        return call

    def _trim(self) -> None:
        while len(self._calls) >= _MAX_STREAMS:
            victim = next((s for s, c in self._calls.items() if c.done), None) or next(iter(self._calls))
            self._drop(victim)

    def _drop(self, sid: str) -> None:
        call = self._calls.pop(sid, None)
        if call is None:
            return
        if call.reaper is not None:
            call.reaper.cancel()
        if call.task is not None and not call.task.done():
            call.task.cancel()

    def unfollowed(self, sid: str, call: _Call) -> None:
        """The last listener left: cancel the call / forget its events unless someone comes back."""
        if call.listeners > 0:
            return
        loop = asyncio.get_running_loop()
        if call.reaper is not None:
            call.reaper.cancel()
        call.reaper = loop.call_later(self.resume_s, self._expire, sid, call)

    def _expire(self, sid: str, call: _Call) -> None:
        if call.listeners == 0 and self._calls.get(sid) is call:
            self._drop(sid)

    async def follow(self, sid: str, call: _Call, after: int) -> AsyncIterator[bytes]:
        """The call's events after id `after`, then new ones until the last; keep-alives between."""
        call.listeners += 1
        if call.reaper is not None:
            call.reaper.cancel()
            call.reaper = None
        try:
            while True:
                changed = call.changed
                for eid, _, wire in call.events:
                    if eid > after:
                        yield wire
                        after = eid
                if call.done:
                    return
                try:
                    await asyncio.wait_for(changed.wait(), timeout=_KEEPALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
        finally:
            call.listeners -= 1
            self.unfollowed(sid, call)


def _last_event_id(value: str | None) -> int:
    if value is None or not value.strip():
        return 0
    v = value.strip()
    if not v.isdigit() or len(v) > 12:
        raise BadInput("Last-Event-ID must be an event id of this stream (a number)")
    return int(v)


def build_stream_router(streams: CallStreams) -> APIRouter:
    router = APIRouter(tags=["calls"])

    @router.post("/v1/tools/{name}/call/stream", response_class=StreamingResponse)
    async def call_stream(
        name: str,
        request: Request,
        arguments: dict[str, Any] = Body(default_factory=dict, embed=True),
        principal: Principal = Depends(request_principal),
    ) -> StreamingResponse:
        """Call a tool as the agent whose key is in Authorization; answers text/event-stream
        (resumable: `GET /v1/calls/{stream}/stream` with `Last-Event-ID`)."""
        pipeline: CallPipeline = request.state.pipeline
        sid, call = streams.open(principal)

        async def progress(value: float, total: float | None, message: str | None) -> None:
            call.add("progress", {"progress": value, "total": total, "message": message})

        async def consent(url: str, connector: str) -> bool:
            call.add("consent", {"url": url, "connector": connector})
            return True  # wait for the user's connection, then finish the call

        async def run() -> None:
            begin_call()
            try:
                r = await pipeline.call(principal, name, arguments, progress=progress, on_consent=consent)
                call.add("result", r.model_dump(mode="json"))
            except WardenError as e:
                call.add("error", {"code": str(e.code), "message": e.message})
            except asyncio.CancelledError:
                call.add("error", {"code": str(ErrorCode.timeout), "message": "cancelled: nobody was listening"})
                raise
            finally:
                call.done = True
                call.changed.set()

        call.add("started", {"tool": name, "stream": sid})
        call.task = asyncio.create_task(run())
        streams.unfollowed(sid, call)  # until the response starts: a client gone before it does not leak the call
        return StreamingResponse(streams.follow(sid, call, 0), media_type="text/event-stream", headers=_HEADERS)

    @router.get("/v1/calls/{stream}/stream", response_class=StreamingResponse)
    async def resume_stream(
        stream: str,
        principal: Principal = Depends(request_principal),
        last_event_id: str | None = Header(default=None, alias="Last-Event-ID", max_length=20),
    ) -> StreamingResponse:
        """Resume a streamed call after a dropped connection: the events after `Last-Event-ID`
        (all of them without it), then the rest until the result. Same agent key only."""
        after = _last_event_id(last_event_id)
        call = streams.find(stream, principal) if len(stream) <= 64 else None
        if call is None:
            raise NotFound("no such call stream (it ended long ago, or is another key's)")
        return StreamingResponse(streams.follow(stream, call, after), media_type="text/event-stream", headers=_HEADERS)

    return router
