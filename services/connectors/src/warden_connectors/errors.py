"""Connector errors. Credential refusals carry the wire codes the proxy acts on."""

from __future__ import annotations

from warden_common.contracts import ErrorCode
from warden_common.errors import BadInput, Conflict, Forbidden, NotFound, WardenError

__all__ = [
    "BadInput",
    "ConnectorNotFound",
    "ConsentRequired",
    "Conflict",
    "CredentialExpired",
    "Disconnected",
    "Forbidden",
    "ReauthRequired",
]


class ConnectorNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"no connector named {name!r}")


class ConsentRequired(WardenError):
    code = ErrorCode.consent_required
    http_status = 409


class ReauthRequired(WardenError):
    code = ErrorCode.reauth_required
    http_status = 409


class CredentialExpired(WardenError):
    code = ErrorCode.expired
    http_status = 409


class Disconnected(WardenError):
    code = ErrorCode.disconnected
    http_status = 409
