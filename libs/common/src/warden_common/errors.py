"""Warden's error tree, drawn once.

    WardenError (code, http_status, retryable)
    ├── BadInput            400 invalid        something from outside failed validation
    │   └── TooLarge        413 invalid        a message over the bus's size limit
    │                                          (details: reason "too_large", size, limit)
    ├── NotFound            404 not_found
    ├── Conflict            409 conflict
    ├── Forbidden           403 forbidden      fail closed: no grant, wrong caller
    ├── Unauthorized        401 unauthorized
    ├── Unavailable         503 unavailable    a dependency is down; retry later
    ├── Timeout             504 timeout
    └── SealError           500 seal_failed    a ciphertext could not be opened (tampered,
                                               swapped, unknown key); never returns the input

Each edge maps these once: HTTP handlers turn them into JSON problem bodies, NATS
handlers into a typed `ReplyError`. Messages are written for a person to act on and
never carry a secret.
"""

from __future__ import annotations

from typing import Any, ClassVar

from warden_common.contracts.base import ErrorCode, ReplyError

__all__ = [
    "BadInput",
    "Conflict",
    "Forbidden",
    "NotFound",
    "SealError",
    "Timeout",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "WardenError",
    "from_reply_error",
]


class WardenError(Exception):
    code: ClassVar[ErrorCode] = ErrorCode.internal
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        code: ErrorCode | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code is not None:
            self.code = code  # type: ignore[misc]

    def to_reply(self) -> ReplyError:
        return ReplyError(
            code=self.code,
            message=self.message,
            retryable=self.retryable,
            details=self.details,
        )


class BadInput(WardenError):
    code = ErrorCode.invalid
    http_status = 400


class TooLarge(BadInput):
    """A request, answer or result larger than the bus carries (`warden_common.limits`).
    On the wire it is `invalid` with `details.reason = "too_large"`, so a replica that does not
    know it still reads a typed refusal."""

    http_status = 413

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message, details={"reason": "too_large", "size": size, "limit": limit})


class NotFound(WardenError):
    code = ErrorCode.not_found
    http_status = 404


class Conflict(WardenError):
    code = ErrorCode.conflict
    http_status = 409


class Forbidden(WardenError):
    code = ErrorCode.forbidden
    http_status = 403


class Unauthorized(WardenError):
    code = ErrorCode.unauthorized
    http_status = 401


class Unavailable(WardenError):
    code = ErrorCode.unavailable
    http_status = 503
    retryable = True


class Timeout(WardenError):
    code = ErrorCode.timeout
    http_status = 504
    retryable = True


class SealError(WardenError):
    code = ErrorCode.internal
    http_status = 500


_BY_CODE: dict[ErrorCode, type[WardenError]] = {
    ErrorCode.invalid: BadInput,
    ErrorCode.not_found: NotFound,
    ErrorCode.conflict: Conflict,
    ErrorCode.forbidden: Forbidden,
    ErrorCode.unauthorized: Unauthorized,
    ErrorCode.unavailable: Unavailable,
    ErrorCode.timeout: Timeout,
}


# the HTTP status an edge answers for another service's domain refusal
_REMOTE_STATUS: dict[ErrorCode, int] = {
    ErrorCode.consent_required: 409,
    ErrorCode.reauth_required: 409,
    ErrorCode.expired: 409,
    ErrorCode.disconnected: 409,
    ErrorCode.approval_rejected: 403,
    ErrorCode.approval_timeout: 504,
    ErrorCode.upstream_error: 502,
    ErrorCode.circuit_open: 503,
}


class RemoteError(WardenError):
    """A typed error answered by another service; carries that service's code."""

    def __init__(self, error: ReplyError) -> None:
        super().__init__(error.message, details=dict(error.details), code=error.code)
        self.reply_error = error
        self.retryable = error.retryable  # type: ignore[misc]
        self.http_status = _REMOTE_STATUS.get(error.code, 500)  # type: ignore[misc]


def from_reply_error(error: ReplyError) -> WardenError:
    """Turn a reply error into the matching exception (RemoteError for domain codes)."""
    cls = _BY_CODE.get(error.code)
    if cls is None:
        return RemoteError(error)
    if cls is BadInput and error.details.get("reason") == "too_large":
        size, limit = error.details.get("size"), error.details.get("limit")
        if isinstance(size, int) and isinstance(limit, int):
            return TooLarge(error.message, size=size, limit=limit)
    return cls(error.message, details=dict(error.details))
