"""Trace context: one trace id follows a call across all four services.

It travels in NATS headers as W3C `traceparent` and lives in a context variable
inside each process.
"""

from __future__ import annotations

import os
from contextvars import ContextVar

__all__ = [
    "current_trace_id",
    "from_traceparent",
    "new_trace_id",
    "set_trace_id",
    "traceparent",
]

_trace_id: ContextVar[str | None] = ContextVar("warden_trace_id", default=None)


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
