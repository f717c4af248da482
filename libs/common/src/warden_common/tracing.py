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
    "current_call_id",
    "current_trace_id",
    "inbound_http",
    "set_call_id",
    "from_traceparent",
    "new_trace_id",
    "set_trace_id",
    "traceparent",
]

_trace_id: ContextVar[str | None] = ContextVar("warden_trace_id", default=None)
_incoming: ContextVar[str | None] = ContextVar("warden_incoming_trace_id", default=None)
_call_id: ContextVar[str | None] = ContextVar("warden_call_id", default=None)


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


def traceparent(trace_id: str) -> str:
    return f"00-{trace_id}-{os.urandom(8).hex()}-01"


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
    value = None
    for k, v in scope.get("headers") or ():
        if k == b"traceparent":
            value = from_traceparent(v.decode("latin-1"))
            break
    _incoming.set(value)
    _trace_id.set(value or new_trace_id())


def begin_call(traceparent_header: str | None = None) -> str:
    """Start a call's trace: the given `traceparent`'s trace id, else the HTTP request's
    (`inbound_http`), else a new one. Returns the trace id; the call id is reset."""
    tid = from_traceparent(traceparent_header) or _incoming.get() or new_trace_id()
    _trace_id.set(tid)
    _call_id.set(None)
    return tid


def current_call_id() -> str | None:
    return _call_id.get()


def set_call_id(call_id: str | None) -> None:
    _call_id.set(call_id)
