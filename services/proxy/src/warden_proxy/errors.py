"""Proxy errors, mapped once per edge: MCP (JSON-RPC error or isError result), HTTP, NATS."""

from __future__ import annotations

from warden_common.contracts import ErrorCode
from warden_common.errors import BadInput, Conflict, Forbidden, NotFound, Unauthorized, Unavailable, WardenError

__all__ = [
    "ArgumentsTooLarge",
    "AuthorityGone",
    "BadInput",
    "ConnectorReplaced",
    "ConsentFailed",
    "ConsentTimedOut",
    "Forbidden",
    "InvalidArguments",
    "NotFound",
    "Unauthorized",
    "Unavailable",
    "UpstreamError",
    "UpstreamResultTooLarge",
]


class InvalidArguments(BadInput):
    """Arguments do not match the tool's input schema; says which field."""


class ArgumentsTooLarge(InvalidArguments):
    """The call's arguments are larger than `WARDEN_PROXY_MAX_ARGUMENT_BYTES`."""

    http_status = 413


class ConnectorReplaced(Conflict):
    """The tool was registered against a connector that was removed; the connector of that
    name now is another one (another id, perhaps another server): its tools need discovery
    and registration, and no earlier grant runs on it. A `conflict`, not `forbidden`, so the
    agent is told why (a refusal reads as "unknown tool")."""


class UpstreamError(WardenError):
    code = ErrorCode.upstream_error
    http_status = 502
    retryable = True


class ConsentFailed(WardenError):
    """The consent a call was waiting for came back refused: a connection is still required."""

    code = ErrorCode.consent_required
    http_status = 409


class ConsentTimedOut(WardenError):
    """A call showed a consent URL and waited `WARDEN_PROXY_CONSENT_WAIT_S` for the connection
    without it arriving; `details` keep the URL and how long it waited (`waited_s`)."""

    code = ErrorCode.consent_required
    http_status = 409


class AuthorityGone(WardenError):
    """A call waited (for an approval or a consent) and meanwhile lost what allowed it: its
    grant was deleted, or the tool was disabled or held for drift. Checked again after every
    wait, so a held call never runs on authority that is gone. An `isError` result on MCP."""

    code = ErrorCode.approval_rejected
    http_status = 403


class UpstreamResultTooLarge(UpstreamError):
    """A list in the upstream's result (content items, resource contents, ...) holds more items
    than `WARDEN_PROXY_MAX_RESULT_ITEMS`; refused before it is built. The upstream is up (the
    breaker does not count it), and the same call would be refused again."""

    retryable = False
