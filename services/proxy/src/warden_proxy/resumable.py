"""Resumable /mcp streams (MCP streamable HTTP, "Resumability and Redelivery"): a bounded
in-memory event store for the SDK's session manager, one view per session.

The SDK's `EventStore` sees only stream ids, and those repeat across sessions (the GET stream
is always `_GET_stream`, request ids are the client's): one store for the whole manager would
let a session's `Last-Event-ID` replay another session's messages. So each session's
transport gets its own view; an event id names one event of one session, and a replay only
ever sends that session's events of that stream.

Bounds: at most `per_session` events per session and `total` per replica, the oldest dropped
first (a client resuming from a dropped event gets nothing replayed, as after a restart);
a session's events go when the session ends. Memory of this replica only: a resume has to
reach the replica that holds the session, as every request of a session already must.

`SessionManager` also primes the GET stream, which the SDK does not: a GET without
`Last-Event-ID` from a 2025-11-25+ client starts with an event holding an id, empty data and
`retry:`, so the client can resume it even before the first notification.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from typing import Any

from mcp.server.streamable_http import (
    LAST_EVENT_ID_HEADER,
    MCP_SESSION_ID_HEADER,
    EventCallback,
    EventId,
    EventMessage,
    EventStore,
    StreamableHTTPServerTransport,
    StreamId,
)
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types import JSONRPCMessage
from mcp_types.version import is_version_at_least
from starlette.types import Message, Receive, Scope, Send

__all__ = ["EventBuffer", "SessionManager"]

GET_STREAM = "_GET_stream"  # the SDK's key for a session's standalone GET stream


class EventBuffer:
    """Every session's stored events on this replica, bounded per session and in total."""

    def __init__(self, *, per_session: int = 1000, total: int = 100_000) -> None:
        self.per_session = per_session
        self.total = total
        self._ids = itertools.count(1)
        # event id -> (session, stream, message or None for a priming event), oldest first
        self._events: OrderedDict[str, tuple[str, str, JSONRPCMessage | None]] = OrderedDict()
        self._sessions: dict[str, deque[str]] = {}

    def __len__(self) -> int:
        return len(self._events)

    def session(self, session_id: str) -> SessionEvents:
        return SessionEvents(self, session_id)

    def forget(self, session_id: str) -> None:
        for eid in self._sessions.pop(session_id, ()):
            self._events.pop(eid, None)

    def store(self, session_id: str, stream_id: str, message: JSONRPCMessage | None) -> str:
        eid = str(next(self._ids))
        self._events[eid] = (session_id, stream_id, message)
        mine = self._sessions.setdefault(session_id, deque())
        mine.append(eid)
        if len(mine) > self.per_session:
            self._events.pop(mine.popleft(), None)
        while len(self._events) > self.total:
            old, (owner, _, _) = self._events.popitem(last=False)
            theirs = self._sessions.get(owner)
            if theirs and theirs[0] == old:
                theirs.popleft()
        return eid

    def replay(self, session_id: str, last_event_id: str) -> tuple[str, list[EventMessage]] | None:
        """The stream of `last_event_id` and that stream's later messages, when it is an event
        of this session still kept; None otherwise (another session's id is unknown here)."""
        seen = self._events.get(last_event_id)
        if seen is None or seen[0] != session_id:
            return None
        stream, after = seen[1], int(last_event_id)
        later = []
        for eid in self._sessions.get(session_id, ()):
            kept = self._events.get(eid)
            if kept is not None and int(eid) > after and kept[1] == stream and kept[2] is not None:
                later.append(EventMessage(kept[2], eid))
        return stream, later


class SessionEvents(EventStore):
    """One session's view of the buffer: what its transport stores and replays."""

    def __init__(self, buffer: EventBuffer, session_id: str) -> None:
        self.buffer = buffer
        self.session_id = session_id

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        return self.buffer.store(self.session_id, str(stream_id), message)

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        found = self.buffer.replay(self.session_id, str(last_event_id))
        if found is None:
            return None
        stream, later = found
        for event in later:
            await send_callback(event)
        return stream


class SessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager, each session with its own view of one bounded event store."""

    def __init__(self, app: Any, *, events: EventBuffer, retry_ms: int, **kwargs: Any) -> None:
        super().__init__(app, retry_interval=retry_ms, **kwargs)
        self.events = events
        self.retry_ms = retry_ms

    def _admit_session(self, requestor: Any) -> StreamableHTTPServerTransport | None:
        transport = super()._admit_session(requestor)
        if transport is not None and transport.mcp_session_id is not None:
            transport._event_store = self.events.session(transport.mcp_session_id)
        return transport

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        await super()._discard_session(session_id, transport)
        self.events.forget(session_id)

    async def _handle_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") == "GET":
            send = self._priming(scope, send)
        await super()._handle_request(scope, receive, send)

    def _priming(self, scope: Scope, send: Send) -> Send:
        """A GET stream (not a resume) of a known 2025-11-25+ session starts with a priming event."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        sid = headers.get(MCP_SESSION_ID_HEADER)
        version = headers.get(MCP_PROTOCOL_VERSION_HEADER, "")
        if (
            sid is None
            or LAST_EVENT_ID_HEADER in headers
            or sid not in self._server_instances
            or not version
            or not is_version_at_least(version, "2025-11-25")
        ):
            return send
        primed = False

        async def priming_send(message: Message) -> None:
            nonlocal primed
            await send(message)
            if primed or message["type"] != "http.response.start":
                return
            primed = True
            ctype = dict(message.get("headers", [])).get(b"content-type", b"")
            if message.get("status") == 200 and ctype.startswith(b"text/event-stream"):
                eid = self.events.store(sid, GET_STREAM, None)
                body = f"id: {eid}\nretry: {self.retry_ms}\ndata: \n\n".encode()
                await send({"type": "http.response.body", "body": body, "more_body": True})

        return priming_send
