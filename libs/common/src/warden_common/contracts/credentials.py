"""connectors <-> proxy: runtime credentials. Only the proxy may publish here."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from warden_common.contracts.base import Message, Subject

__all__ = [
    "SCOPE_TOKEN_PATTERN",
    "CONNECTIONS_CONSENT",
    "CONNECTIONS_DISCONNECT",
    "CONNECTIONS_GET",
    "CONNECTIONS_LIST",
    "CREDENTIALS_GET",
    "ConnectionList",
    "ConnectionRequest",
    "ConnectionState",
    "ConnectionStatus",
    "Credential",
    "CredentialRequest",
    "Transport",
    "header_refusal",
]

Transport = Literal["streamable_http", "sse"]
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,47}$"
# an OAuth scope token (RFC 6749 §3.3: printable ASCII without space, quote or backslash)
SCOPE_TOKEN_PATTERN = r"^[\x21\x23-\x5B\x5D-\x7E]{1,200}$"
ScopeToken = Annotated[str, StringConstraints(pattern=SCOPE_TOKEN_PATTERN)]


# Headers a credential may not set, with why (compared case-insensitively). Connectors refuses
# them when an admin configures headers; the proxy refuses a credential carrying one (stored
# before this list grew) instead of sending it. One list, so both sides agree.
_HOP_BY_HOP = "a hop-by-hop header (RFC 9110 §7.6.1), never forwarded"
_TRANSPORT = "set by Warden's MCP transport for every request"
RESERVED_HEADERS: dict[str, str] = {
    **dict.fromkeys(
        (
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "proxy-authenticate",
        ),
        _HOP_BY_HOP,
    ),
    **dict.fromkeys(
        (
            "host",
            "content-length",
            "content-type",
            "content-encoding",
            "accept",
            "accept-encoding",
            "expect",
            "mcp-session-id",
            "mcp-protocol-version",
            "last-event-id",
        ),
        _TRANSPORT,
    ),
}


def header_refusal(name: str) -> str | None:
    """Why a credential may not set header `name`, or None when it may."""
    why = RESERVED_HEADERS.get(name.lower())
    return f"{name!r} is {why}; a connector may not set it" if why else None


class CredentialRequest(Message):
    connector: str = Field(pattern=NAME_PATTERN)
    user: str | None = Field(default=None, max_length=200)
    # after an upstream 401: skip caches and refresh if the connector can
    force_refresh: bool = False
    # jwt_passthrough connectors: the embedding site's JWE (RSA-OAEP-256 + A256GCM wrapping
    # an RS256 JWT), as the caller sent it; a secret, never logged
    jwe: str | None = Field(default=None, max_length=16384, repr=False)
    # "discovery": the registry listing a connector's tools through the proxy. Only then may a
    # per-user connector fall back to the admin's own connection; a call must name its user.
    purpose: Literal["call", "discovery"] = "call"
    # after an upstream `403 insufficient_scope`: the scopes its challenge requires. Connectors
    # answers with a refusal that leads to a consent for the union of held and required scopes
    # (`consent_required` + URL for a per-user connection; `reauth_required` for the
    # organization's, whose next admin authorization asks for them).
    step_up_scopes: tuple[ScopeToken, ...] = Field(default=(), max_length=50)


class Credential(Message):
    """What the proxy needs to reach one upstream: where, how, and the headers to inject.

    The header values are secrets: they exist only in this reply and the proxy's memory.
    """

    connector: str
    url: str
    transport: Transport = "streamable_http"
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    expires_at: datetime | None = None
    # bumps on every URL or auth change, so the proxy can close pooled sessions
    config_version: int = 0
    timeout_s: float = 60.0
    # the connector's stable id: a connector created later under the same name has another,
    # so the proxy refuses a tool registered against the one that was removed
    connector_id: str | None = Field(default=None, max_length=64)
    # jwt_passthrough: the `sub` of the embedding site's verified JWT, the end user the call is
    # made for (recorded as the audit's `refs.user` when the caller named none)
    subject: str | None = Field(default=None, max_length=200)


CREDENTIALS_GET = Subject("credentials.get", CredentialRequest, Credential)


# -- an end user's own connections (per-user connectors), through the proxy ---------------------
ConnectionState = Literal["connection_required", "verifying", "connected", "reauth_required", "expired"]


class ConnectionRequest(Message):
    """One user's connection to a per-user connector (all of them for `connections.list`).
    `user` is whom the proxy authenticated (the agent key's user), never a caller's choice."""

    connector: str | None = Field(default=None, pattern=NAME_PATTERN)
    user: str = Field(min_length=1, max_length=200)


class ConnectionStatus(Message):
    connector: str
    user: str
    status: ConnectionState
    scopes: list[str] = Field(default_factory=list)
    connected_at: datetime | None = None
    expires_at: datetime | None = None
    reason: str | None = None
    # the upstream account the consent linked (email or subject of its token), to check it is yours
    account: str | None = Field(default=None, max_length=320)
    # only in the answer to `connections.consent`: where the user grants access
    consent_url: str | None = None
    consent_expires_at: datetime | None = None


class ConnectionList(Message):
    connections: list[ConnectionStatus]


CONNECTIONS_LIST = Subject("connections.list", ConnectionRequest, ConnectionList)
CONNECTIONS_GET = Subject("connections.get", ConnectionRequest, ConnectionStatus)
CONNECTIONS_CONSENT = Subject("connections.consent", ConnectionRequest, ConnectionStatus)
CONNECTIONS_DISCONNECT = Subject("connections.disconnect", ConnectionRequest, ConnectionStatus)
