"""Proxy errors, mapped once per edge: MCP (JSON-RPC error or isError result), HTTP, NATS."""

from __future__ import annotations

from warden_common.contracts import ErrorCode
from warden_common.errors import BadInput, Forbidden, NotFound, Unauthorized, Unavailable, WardenError

__all__ = [
    "ArgumentsTooLarge",
    "BadInput",
    "ConsentFailed",
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


class UpstreamError(WardenError):
    code = ErrorCode.upstream_error
    http_status = 502
    retryable = True


class ConsentFailed(WardenError):
    """The consent a call was waiting for came back refused: a connection is still required."""

    code = ErrorCode.consent_required
    http_status = 409


class UpstreamResultTooLarge(UpstreamError):
    """A list in the upstream's result (content items, resource contents, ...) holds more items
    than `WARDEN_PROXY_MAX_RESULT_ITEMS`; refused before it is built. The upstream is up (the
    breaker does not count it), and the same call would be refused again."""

    retryable = False
