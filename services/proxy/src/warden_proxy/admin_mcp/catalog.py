"""Catalog tools: the tool registry's admin API (discover, register, refresh, list, show,
flags; profiles and their grants)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from warden_common.contracts.credentials import NAME_PATTERN

from warden_proxy.admin_mcp.apis import ToolFailed
from warden_proxy.admin_mcp.calls import AdminCall
from warden_proxy.admin_mcp.toolkit import (
    CHANGE,
    CHANGE_IDEMPOTENT,
    CONNECTOR,
    DESTROY,
    PROFILE,
    READ,
    TOOL,
    AdminTool,
    arr,
    boolean,
    obj,
    string,
)

__all__ = ["CATALOG_TOOLS"]

_OPERATION = {"type": "string", "enum": ["read", "write"], "description": "the tool's fact: read or write"}
_ALIAS = string(
    "the prefix of the registered names (default: the connector's name)", max_length=48, pattern=NAME_PATTERN
)
_TOOL = obj(
    {
        "name": {"type": "string"},
        "connector": {"type": "string"},
        "operation": {"type": "string"},
        "auto_approve": {"type": "boolean"},
        "deferred": {"type": "boolean"},
        "favorite": {"type": "boolean"},
        "enabled": {"type": "boolean"},
        "held": {"type": "boolean"},
    },
    ("name",),
    closed=False,
)
_GRANT = obj(
    {
        "id": {"type": "string"},
        "tool": {"type": "string"},
        "read_only": {"type": "boolean"},
        "reason": {"type": "string"},
    },
    ("id", "tool"),
    closed=False,
)
_PROFILE_OUT = obj(
    {"name": {"type": "string"}, "description": {"type": "string"}, "grants": arr(_GRANT, "grants", max_items=100_000)},
    ("name",),
    closed=False,
)
_FLAGS = ("auto_approve", "deferred", "enabled", "favorite", "operation")
_LIST_FILTERS = ("connector", "q", "operation", "deferred", "favorite", "enabled", "held", "missing")
_REASON = string("why (recorded in the audit log)", max_length=1000)


async def _discover(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    params = {"alias": args.get("alias")}
    body = await call.api("registry", "POST", f"/v1/connectors/{args['connector']}/discover", params=params)
    return {"tools": body["tools"]}


async def _register(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    connector = args.pop("connector")
    out: dict[str, Any] = await call.api("registry", "POST", f"/v1/connectors/{connector}/tools", json=args)
    return out


async def _refresh(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = await call.api("registry", "POST", f"/v1/connectors/{args['connector']}/refresh")
    return out


async def _list_tools(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    rows = await call.api("registry", "GET", "/v1/tools", params={k: args.get(k) for k in _LIST_FILTERS})
    # the input schemas are get_tool's: a long catalog stays readable
    return {"tools": [{k: v for k, v in t.items() if k not in ("input_schema", "drift")} for t in rows]}


async def _get_tool(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    return {"tool": await call.api("registry", "GET", f"/v1/tools/{quote(args['name'], safe='')}")}


async def _set_flags(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    patch = {k: args[k] for k in _FLAGS if k in args}
    if not patch:
        raise ToolFailed("nothing to change: give at least one of " + ", ".join(_FLAGS))
    name = quote(args["name"], safe="")
    return {"tool": await call.api("registry", "PATCH", f"/v1/tools/{name}", json=patch)}


async def _list_profiles(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    return {"profiles": await call.api("registry", "GET", "/v1/profiles")}


async def _create_profile(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    return {"profile": await call.api("registry", "POST", "/v1/profiles", json=args)}


async def _grant(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    granted = []
    for tool in args["tools"]:
        body = {"tool": tool, "read_only": args.get("read_only", False), "reason": args["reason"]}
        granted.append(await call.api("registry", "POST", f"/v1/profiles/{args['profile']}/grants", json=body))
    return {"grants": granted}


async def _revoke(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    gid = quote(args["grant_id"], safe="")
    await call.api(
        "registry", "DELETE", f"/v1/profiles/{args['profile']}/grants/{gid}", params={"reason": args["reason"]}
    )
    return {"revoked": args["grant_id"], "profile": args["profile"]}


_SELECTION = obj(
    {
        "name": string("the upstream tool's name", max_length=128),
        "operation": _OPERATION,
        "auto_approve": boolean("run without an approval (default: the connector's default)"),
        "deferred": boolean("hidden behind tool_search until found"),
        "favorite": boolean("pinned in lists"),
    },
    ("name",),
)

CATALOG_TOOLS = [
    AdminTool(
        "discover_tools",
        "Discover a connection's tools",
        "List the tools a connector's server offers (through the proxy), each with a pre-classified "
        "read/write fact and the name it would be registered under. Changes nothing.",
        obj({"connector": CONNECTOR, "alias": _ALIAS}, ("connector",)),
        obj(
            {"tools": arr(obj({"name": {"type": "string"}}, ("name",), closed=False), "offered", max_items=100_000)},
            ("tools",),
        ),
        READ.model_copy(update={"open_world_hint": True}),
        _discover,
    ),
    AdminTool(
        "register_tools",
        "Register tools",
        "Register a connector's tools in the catalog as `<alias>__<tool>`: the ones listed (with their "
        "read/write fact and flags), or all when `tools` is omitted.",
        obj(
            {
                "connector": CONNECTOR,
                "alias": _ALIAS,
                "tools": arr(_SELECTION, "the tools to register (omit for all)", max_items=1000),
                "auto_approve_default": boolean("the connector-level auto-approve default"),
                "cache_enabled": boolean("false: list from the upstream every time"),
            },
            ("connector",),
        ),
        obj(
            {
                "registered": arr({"type": "string"}, "registered names", max_items=100_000),
                "skipped": arr(obj({}, closed=False), "left out, and why", max_items=100_000),
            },
            ("registered",),
        ),
        CHANGE.model_copy(update={"open_world_hint": True}),
        _register,
    ),
    AdminTool(
        "refresh_tools",
        "Refresh a connection's tools",
        "List the connector again: tools changed upstream are flagged (and held), tools gone are hidden.",
        obj({"connector": CONNECTOR}, ("connector",)),
        obj(
            {
                k: arr({"type": "string"}, k, max_items=100_000)
                for k in ("drifted", "restored", "missing", "unregistered_upstream")
            },
            ("drifted", "restored", "missing"),
        ),
        CHANGE_IDEMPOTENT.model_copy(update={"open_world_hint": True}),
        _refresh,
    ),
    AdminTool(
        "list_tools",
        "List tools",
        "The catalog's registered tools, filtered (connector, text, read/write, flags, held, missing).",
        obj(
            {
                "connector": CONNECTOR,
                "q": string("text in the name or description", max_length=200),
                "operation": _OPERATION,
                "deferred": boolean("only deferred (or not)"),
                "favorite": boolean("only favorites (or not)"),
                "enabled": boolean("only enabled (or disabled)"),
                "held": boolean("only held for re-approval (or not)"),
                "missing": boolean("only gone upstream (or not)"),
            }
        ),
        obj({"tools": arr(_TOOL, "tools", max_items=100_000)}, ("tools",)),
        READ,
        _list_tools,
    ),
    AdminTool(
        "get_tool",
        "Show a tool",
        "One registered tool: its description, input schema, read/write fact, flags and drift.",
        obj({"name": TOOL}, ("name",)),
        obj({"tool": _TOOL}, ("tool",)),
        READ,
        _get_tool,
    ),
    AdminTool(
        "set_tool_flags",
        "Set a tool's flags",
        "Change a tool's auto-approve, deferred, enabled or favorite flag, or its read/write fact.",
        obj(
            {
                "name": TOOL,
                "auto_approve": boolean("run without an approval"),
                "deferred": boolean("hidden behind tool_search until found"),
                "enabled": boolean("visible and callable at all"),
                "favorite": boolean("pinned in lists"),
                "operation": _OPERATION,
            },
            ("name",),
        ),
        obj({"tool": _TOOL}, ("tool",)),
        CHANGE_IDEMPOTENT,
        _set_flags,
    ),
    AdminTool(
        "list_profiles",
        "List profiles",
        "The behavior profiles agents are bound to, each with its grants.",
        obj({}),
        obj({"profiles": arr(_PROFILE_OUT, "profiles", max_items=100_000)}, ("profiles",)),
        READ,
        _list_profiles,
    ),
    AdminTool(
        "create_profile",
        "Create a profile",
        "A new behavior profile (no grants yet: its agents see nothing until tools are granted).",
        obj(
            {
                "name": PROFILE,
                "description": string("what its agents are for", max_length=1000, min_length=0),
                "tool_names": {
                    "type": "string",
                    "enum": ["namespaced", "bare"],
                    "description": "how its agents see names",
                },
            },
            ("name",),
        ),
        obj({"profile": _PROFILE_OUT}, ("profile",)),
        CHANGE,
        _create_profile,
    ),
    AdminTool(
        "grant_tools",
        "Grant tools",
        "Let a profile's agents see and call tools: names or patterns such as `notion__*`, optionally "
        "read-only (only tools whose fact is read), with a reason.",
        obj(
            {
                "profile": PROFILE,
                "tools": arr(
                    string("a tool name or an fnmatch pattern", max_length=128, pattern=r"^[A-Za-z0-9_.*?\[\]!-]+$"),
                    "what to grant",
                    min_items=1,
                    max_items=50,
                ),
                "read_only": boolean("only tools whose operation is read"),
                "reason": _REASON,
            },
            ("profile", "tools", "reason"),
        ),
        obj({"grants": arr(_GRANT, "the grants made", max_items=50)}, ("grants",)),
        CHANGE,
        _grant,
    ),
    AdminTool(
        "revoke_grant",
        "Revoke a grant",
        "Take a grant away from a profile (list_profiles shows the grant ids), with a reason.",
        obj(
            {"profile": PROFILE, "grant_id": string("the grant's id", max_length=64), "reason": _REASON},
            ("profile", "grant_id", "reason"),
        ),
        obj({"revoked": {"type": "string"}, "profile": {"type": "string"}}, ("revoked", "profile")),
        DESTROY,
        _revoke,
    ),
]
