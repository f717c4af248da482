"""Operations tools: the proxy's own approvals and agent keys (in process, recorded with the
admin's identity as the HTTP routes record it), and the audit service's query API."""

from __future__ import annotations

from typing import Any

from warden_proxy.admin_mcp.calls import AdminCall
from warden_proxy.admin_mcp.toolkit import CHANGE, PROFILE, READ, AdminTool, arr, integer, obj, string
from warden_proxy.agents import AgentKeyCreate
from warden_proxy.approvals import ApprovalDecision

__all__ = ["OPERATION_TOOLS"]

_APPROVAL = obj(
    {
        "id": {"type": "string"},
        "tool": {"type": "string"},
        "profile": {"type": "string"},
        "status": {"type": "string"},
        "arguments": {"type": "object"},
    },
    ("id", "tool", "status"),
    closed=False,
)
_TIME = {"type": "string", "format": "date-time", "maxLength": 64}
_PAGE = {
    "limit": integer("how many (newest first)", minimum=1, maximum=1000),
    "cursor": string("next_cursor of the previous page", max_length=500),
}
_ITEMS = obj(
    {"items": arr({"type": "object"}, "newest first", max_items=1000), "next_cursor": {"type": ["string", "null"]}},
    ("items",),
)
_EXECUTION_FILTERS = {
    "tool": string("exact, or a glob such as notion__*", max_length=200),
    "connector": string("the connector", max_length=100),
    "profile": string("the profile", max_length=100),
    "status": string("ok, error, denied, rejected, ...", max_length=40),
    "state": string("requested … completed, failed, denied", max_length=40),
    "user": string("the end user", max_length=200),
    "actor": string("`id` or `kind:id`", max_length=250),
    "since": _TIME,
    "until": _TIME,
}
_EVENT_FILTERS = {
    "type": string("event type, exact or a glob such as call.*", max_length=100),
    "connector": string("exact, or a glob", max_length=100),
    "tool": string("exact, or a glob", max_length=200),
    "profile": string("the profile", max_length=100),
    "actor": string("`id` or `kind:id`", max_length=250),
    "status": string("the event's status", max_length=40),
    "call_id": string("one call", max_length=100),
    "source": string("the service that published it", max_length=40),
    "user": string("the end user", max_length=200),
    "q": string("text in the data payload", max_length=200),
    "since": _TIME,
    "until": _TIME,
}


async def _list_approvals(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    status = args.get("status", "pending")
    views = await call.approvals.list(None if status == "all" else status)
    return {"approvals": [v.model_dump(mode="json") for v in views]}


async def _decide(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    body = ApprovalDecision(reason=args.get("reason", ""))
    view = await call.approvals.decide(args["approval_id"], args["decision"] == "approve", body, call.actor)
    return {"approval": view.model_dump(mode="json")}


async def _create_key(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    return {"agent_key": await call.keys.create(AgentKeyCreate.model_validate(args), call.actor)}


async def _executions(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = await call.api("audit", "GET", "/v1/executions", params=args)
    return out


async def _search(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = await call.api("audit", "GET", "/v1/events", params=args)
    return out


async def _verify(call: AdminCall, args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = await call.api("audit", "POST", "/v1/verify", params=args)
    return out


OPERATION_TOOLS = [
    AdminTool(
        "list_approvals",
        "List approvals",
        "Tool calls held for an admin's approval (pending by default).",
        obj({"status": {"type": "string", "enum": ["pending", "approved", "rejected", "expired", "all"]}}),
        obj({"approvals": arr(_APPROVAL, "approvals", max_items=100_000)}, ("approvals",)),
        READ,
        _list_approvals,
    ),
    AdminTool(
        "decide_approval",
        "Approve or reject a held call",
        "Approve or reject a pending call (the first decision wins), with a reason.",
        obj(
            {
                "approval_id": string("the approval's id", max_length=64),
                "decision": {"type": "string", "enum": ["approve", "reject"]},
                "reason": string("why (shown to the caller when rejected)", max_length=1000, min_length=0),
            },
            ("approval_id", "decision"),
        ),
        obj({"approval": _APPROVAL}, ("approval",)),
        CHANGE,
        _decide,
    ),
    AdminTool(
        "create_agent_key",
        "Create an agent key",
        "An API key for an agent, bound to a profile (and optionally an end user). The key is in "
        "this answer only; Warden keeps its hash.",
        obj(
            {
                "name": string("what the key is for", max_length=200),
                "profile": PROFILE,
                "user": string("the end user it acts for (per-user connectors)", max_length=200),
            },
            ("name", "profile"),
        ),
        obj(
            {
                "agent_key": obj(
                    {"key": {"type": "string"}, "prefix": {"type": "string"}}, ("key", "prefix"), closed=False
                )
            },
            ("agent_key",),
        ),
        CHANGE,
        _create_key,
    ),
    AdminTool(
        "list_executions",
        "List tool executions",
        "Tool calls, newest first, one row per call (status, latency, who, which tool), filtered.",
        obj({**_EXECUTION_FILTERS, **_PAGE}),
        _ITEMS,
        READ,
        _executions,
    ),
    AdminTool(
        "search_audit",
        "Search the audit log",
        "Audit events, newest first, with the audit API's filters (type, connector, tool, profile, "
        "actor, status, call, source, user, text, time range).",
        obj({**_EVENT_FILTERS, **_PAGE}),
        _ITEMS,
        READ,
        _search,
    ),
    AdminTool(
        "verify_audit",
        "Verify the audit log",
        "Recompute the audit log's hash chains over a time range; reports the first break of each lane.",
        obj({"since": _TIME, "until": _TIME}),
        obj({"ok": {"type": "boolean"}, "checked": {"type": "integer"}}, ("ok", "checked"), closed=False),
        READ,
        _verify,
    ),
]
