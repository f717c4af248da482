"""Trace context: one trace id follows a call across all four services.

It travels in NATS headers as W3C `traceparent` and lives in a context variable
inside each process. An HTTP request's own `traceparent` is honoured: the HTTP edge
(`inbound_http`) remembers its trace id, and a call started under it (`begin_call`)
keeps it, so the caller's trace goes on through Warden and on to the upstream (which
gets a `traceparent` of the same trace). The call id rides along for log lines.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from typing import Any

__all__ = [
    "begin_call",
    "call_parent",
    "current_call_id",
    "current_span_id",
    "current_trace_id",
    "inbound_http",
    "set_call_id",
    "from_traceparent",
    "parent_from_traceparent",
    "set_span_id",
    "new_trace_id",
    "set_trace_id",
    "traceparent",
]

_trace_id: ContextVar[str | None] = ContextVar("warden_trace_id", default=None)
_incoming: ContextVar[str | None] = ContextVar("warden_incoming_trace_id", default=None)
# the caller's span id, with the trace id it belongs to (a parent is only ever one in its own trace)
_incoming_parent: ContextVar[tuple[str, str] | None] = ContextVar("warden_incoming_parent", default=None)
_call_id: ContextVar[str | None] = ContextVar("warden_call_id", default=None)
# the open OpenTelemetry span's id (warden_common.otel), the parent in the `traceparent` we send;
# None when tracing is off (then each `traceparent` gets a fresh random parent id, as before)
_span_id: ContextVar[str | None] = ContextVar("warden_span_id", default=None)


def new_trace_id() -> str:
    return os.urandom(16).hex()


def current_trace_id() -> str | None:
    return _trace_id.get()


def set_trace_id(trace_id: str | None) -> None:
    _trace_id.set(trace_id)


def ensure_trace_id() -> str:
    tid = _trace_id.get()
    if tid is None:
        tid = new_trace_id()
        _trace_id.set(tid)
    return tid


def current_span_id() -> str | None:
    return _span_id.get()


def set_span_id(span_id: str | None) -> None:
    _span_id.set(span_id)


def traceparent(trace_id: str) -> str:
    return f"00-{trace_id}-{_span_id.get() or os.urandom(8).hex()}-01"


def parent_from_traceparent(value: str | None) -> str | None:
    """The parent span id of a valid W3C `traceparent` (16 hex digits, not all zero)."""
    if not value or from_traceparent(value) is None:
        return None
    parent = value.split("-")[2]
    if len(parent) == 16 and all(c in "0123456789abcdef" for c in parent) and parent != "0" * 16:
        return parent
    return None


def from_traceparent(value: str | None) -> str | None:
    if not value:
        return None
    parts = value.split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and all(c in "0123456789abcdef" for c in parts[1]):
        return parts[1]
    return None


def inbound_http(scope: dict[str, Any]) -> None:
    """At the HTTP edge: remember the trace id of the request's `traceparent` (when it is a
    valid W3C one) for the calls this request starts, and make it the current trace."""
    value = parent = None
    for k, v in scope.get("headers") or ():
        if k == b"traceparent":
            header = v.decode("latin-1")
            value, parent = from_traceparent(header), parent_from_traceparent(header)
            break
    _incoming.set(value)
    _incoming_parent.set((value, parent) if value and parent else None)
    _trace_id.set(value or new_trace_id())


def begin_call(traceparent_header: str | None = None) -> str:
    """Start a call's trace: the given `traceparent`'s trace id, else the HTTP request's
    (`inbound_http`), else a new one. Returns the trace id; the call id is reset."""
    tid = from_traceparent(traceparent_header)
    if tid is not None:
        parent = parent_from_traceparent(traceparent_header)
        _incoming_parent.set((tid, parent) if parent else None)
    else:
        tid = _incoming.get() or new_trace_id()  # the HTTP request's caller's parent stays
    _trace_id.set(tid)
    _call_id.set(None)
    return tid


def call_parent() -> str | None:
    """The caller's span id (its `traceparent` parent) when the current trace is the caller's:
    the parent of a span opened outside any other (`warden_common.otel`)."""
    got = _incoming_parent.get()
    return got[1] if got is not None and got[0] == _trace_id.get() else None


def current_call_id() -> str | None:
    return _call_id.get()


def set_call_id(call_id: str | None) -> None:
    _call_id.set(call_id)
