"""The registry's errors, all from warden_common's tree:

    WardenError
    ├── BadInput    400  a name outside MCP's rules, a tool the upstream does not offer
    ├── NotFound    404  no such tool, profile or grant; a tool gone from its upstream
    ├── Conflict    409  a name already taken; nothing to re-approve
    ├── Forbidden   403  fail closed: not granted, read-only grant on a write tool, held, disabled
    ├── Unavailable 503  the proxy (and so the upstream) did not answer a listing
    └── Timeout     504

`Forbidden` and `NotFound` reach the proxy as typed reply errors; it shows an agent both as
"unknown tool", so a refusal tells an agent nothing about tools it may not see.
"""

from warden_common.errors import BadInput, Conflict, Forbidden, NotFound, Timeout, Unavailable, WardenError

__all__ = ["BadInput", "Conflict", "Forbidden", "NotFound", "Timeout", "Unavailable", "WardenError"]
