"""Connection tools: the connectors service's admin API (list, show, create, update,
disconnect, reconnect, delete). Secrets go in (create/update) and never come back out."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from warden_proxy.admin_mcp.apis import ToolFailed
from warden_proxy.admin_mcp.calls import AdminCall
from warden_proxy.admin_mcp.toolkit import (
    CHANGE,
    CONNECTOR,
    DESTROY,
    READ,
    AdminTool,
    arr,
    obj,
    string,
)

__all__ = ["CONNECTION_TOOLS"]

_AUTH_TYPES = ["none", "bearer", "api_key", "custom_headers", "jwt_passthrough", "oauth2"]
_AUTH = {
    "type": "object",
    "description": (
        "how Warden authenticates to the server: {type: none} | {type: bearer, token} | "
        "{type: api_key, header, key} | {type: custom_headers, headers} | "
        "{type: jwt_passthrough, site_public_jwk, audience, issuer?, headers?} | "
        "{type: oauth2, grant_type?, client_id?, client_secret?, scopes?, ...} "
        "(the connectors service checks every field; secrets are sealed and never shown again)"
    ),
    "properties": {"type": {"type": "string", "enum": _AUTH_TYPES}},
    "required": ["type"],
    "maxProperties": 32,
}
_FIELDS: dict[str, Any] = {
    "url": string("the MCP server's URL", max_length=2000, min_length=8),
    "transport": {"type": "string", "enum": ["streamable_http", "sse"]},
    "description": string("what it is for", max_length=2000, min_length=0),
    "auth": _AUTH,
    "expires_at": string("when a static credential stops working (ISO 8601)", max_length=64, format="date-time"),
    "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600, "description": "per upstream call"},
}
_CONNECTION = obj(
    {
        "name": {"type": "string"},
        "url": {"type": "string"},
        "status": {"type": "string"},
        "status_reason": {"type": ["string", "null"]},
        "auth_type": {"type": "string"},
        "scope": {"type": "string"},
        "secret_stored": {"type": "boolean"},
    },
    ("name", "status"),
    closed=False,
)
_TOOL_SUMMARY = obj({"name": {"type": "string"}, "operation": {"type": "string"}}, ("name",), closed=False)
_CONSENTED = obj(
    {
        "connection": _CONNECTION,
        "consent_url": {"type": ["string", "null"], "description": "open it to connect (OAuth); single use"},
        "consent_expires_at": {"type": ["string", "null"]},
        "connected": {"type": "boolean", "description": "whether the connection is active now"},
    },
    ("connection", "connected"),
)
_CONSENT_KEYS = ("consent_url", "expires_at", "connected")


def _view(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in _CONSENT_KEYS}


async def _list(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    rows = await call.api("connectors", "GET", "/v1/connectors", params={"status": args.get("status", "all")})
    return {"connections": rows}


async def _get(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    name = args["name"]
    view = await call.api("connectors", "GET", f"/v1/connectors/{name}")
    tools = await call.api("registry", "GET", "/v1/tools", params={"connector": name})
    keep = ("name", "description", "operation", "enabled", "auto_approve", "deferred", "held", "missing")
    return {"connection": view, "tools": [{k: t.get(k) for k in keep} for t in tools]}


async def _wait_active(call: AdminCall, name: str) -> bool:
    """After the admin opened the consent URL: poll the connector until it is active (bounded)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(call.consent_wait_s):
            while True:
                view = await call.api("connectors", "GET", f"/v1/connectors/{name}")
                if view.get("status") == "active":
                    return True
                await asyncio.sleep(1)
    return False


async def _consented(call: AdminCall, name: str, view: dict[str, Any], consent: dict[str, Any]) -> dict[str, Any]:
    url = consent.get("consent_url")
    connected = bool(consent.get("connected")) or view.get("status") == "active"
    if url:
        opened = await call.open_url(f"Open this link to connect {name} to Warden (valid for a few minutes).", url)
        if opened and await _wait_active(call, name):
            connected = True
            view = await call.api("connectors", "GET", f"/v1/connectors/{name}")
    return {
        "connection": view,
        "consent_url": None if connected else url,
        "consent_expires_at": None if connected else consent.get("expires_at"),
        "connected": connected,
    }


async def _create(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    auth = args.get("auth") or {"type": "none"}
    oauth = auth.get("type") == "oauth2"
    body = await call.api(
        "connectors", "POST", "/v1/connectors", json=args, params={"authorize": True} if oauth else None
    )
    return await _consented(call, args["name"], _view(body), body if oauth else {})


async def _update(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    name = args.pop("name")
    if not args:
        raise ToolFailed("nothing to change: give at least one of " + ", ".join(_FIELDS))
    return {"connection": await call.api("connectors", "PATCH", f"/v1/connectors/{name}", json=args)}


async def _disconnect(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    return {"connection": await call.api("connectors", "POST", f"/v1/connectors/{args['name']}/disconnect")}


async def _reconnect(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    name = args["name"]
    consent = await call.api("connectors", "POST", f"/v1/connectors/{name}/reconnect")
    view = await call.api("connectors", "GET", f"/v1/connectors/{name}")
    return await _consented(call, name, view, consent)


async def _delete(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    name = args["name"]
    answer = await call.confirm(
        f"Delete the connector {name}? Its credentials are revoked and its tools stop working for every agent."
    )
    if answer is None and args.get("confirm_name") != name:
        raise ToolFailed(
            f"not deleted: confirm by passing confirm_name equal to the connector's name ({name!r}); "
            "this client cannot show a confirmation form"
        )
    if answer is False:
        raise ToolFailed(f"not deleted: the deletion of {name} was not confirmed")
    await call.api("connectors", "DELETE", f"/v1/connectors/{name}")
    return {"deleted": name}


NAME = {"name": CONNECTOR}

CONNECTION_TOOLS = [
    AdminTool(
        "list_connections",
        "List connections",
        "List the connectors (remote MCP servers) behind Warden, optionally only those active, "
        "needing attention (pending, reauth required, expired, error) or inactive (disconnected).",
        obj({"status": {"type": "string", "enum": ["active", "needs_attention", "inactive", "all"]}}),
        obj({"connections": arr(_CONNECTION, "the connectors", max_items=100_000)}, ("connections",)),
        READ,
        _list,
    ),
    AdminTool(
        "get_connection",
        "Show a connection",
        "A connector's details (status, auth kind, OAuth endpoints; never a secret) and its registered tools.",
        obj(NAME, ("name",)),
        obj({"connection": _CONNECTION, "tools": arr(_TOOL_SUMMARY, "registered tools", max_items=100_000)}),
        READ,
        _get,
    ),
    AdminTool(
        "create_connection",
        "Add a connection",
        "Put a remote MCP server behind Warden. For OAuth (auth.type oauth2) the answer has a consent "
        "URL; a client that can open URLs is asked to, and the tool waits until the connection is made.",
        obj(
            {"name": CONNECTOR, **_FIELDS, "scope": {"type": "string", "enum": ["organization", "per_user"]}},
            ("name", "url"),
        ),
        _CONSENTED,
        CHANGE.model_copy(update={"open_world_hint": True}),
        _create,
    ),
    AdminTool(
        "update_connection",
        "Change a connection",
        "Change a connector's URL, transport, description, auth (replaces the stored credential), "
        "credential expiry or timeout.",
        obj({"name": CONNECTOR, **_FIELDS}, ("name",)),
        obj({"connection": _CONNECTION}, ("connection",)),
        DESTROY,
        _update,
    ),
    AdminTool(
        "disconnect_connection",
        "Disconnect",
        "Drop a connector's credentials (revoked upstream when possible); its tools fail closed until reconnected.",
        obj(NAME, ("name",)),
        obj({"connection": _CONNECTION}, ("connection",)),
        DESTROY,
        _disconnect,
    ),
    AdminTool(
        "reconnect_connection",
        "Reconnect",
        "Start a fresh consent for an OAuth connector (discovery runs again); answers the consent URL "
        "and, when the client can open URLs, asks the admin to and waits for the connection.",
        obj(NAME, ("name",)),
        _CONSENTED,
        CHANGE.model_copy(update={"open_world_hint": True}),
        _reconnect,
    ),
    AdminTool(
        "delete_connection",
        "Delete a connection",
        "Remove a connector and its credentials. Asks the admin to confirm when the client can show a "
        "form; otherwise pass confirm_name equal to the connector's name.",
        obj(
            {"name": CONNECTOR, "confirm_name": string("the connector's name again, to confirm", max_length=48)},
            ("name",),
        ),
        obj({"deleted": {"type": "string"}}, ("deleted",)),
        DESTROY,
        _delete,
    ),
]
