"""Audit errors, on top of `warden_common.errors`:

WardenError
├── BadInput            400 invalid
│   ├── BadCursor           a cursor this API did not give out
│   └── BadFilter           a filter that cannot be used (e.g. until before since)
├── NotFound            404 not_found
│   └── ExecutionNotFound   no call with that id
└── Unavailable         503 unavailable
    └── StoreUnavailable    Postgres cannot be reached; JetStream keeps the events
"""

from __future__ import annotations

from warden_common.errors import BadInput, NotFound, Unavailable

__all__ = ["BadCursor", "BadFilter", "ExecutionNotFound", "StoreUnavailable"]


class BadCursor(BadInput):
    pass


class BadFilter(BadInput):
    pass


class ExecutionNotFound(NotFound):
    pass


class StoreUnavailable(Unavailable):
    pass
