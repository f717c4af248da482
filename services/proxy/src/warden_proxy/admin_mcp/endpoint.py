"""The admin MCP endpoint (streamable HTTP at /mcp/admin): Warden's own admin operations as
MCP tools, for admins who work from an AI client.

An ASGI guard admits the admin token or an admin-scoped JWT before the MCP machinery sees a
request (401 otherwise, an agent key included) and puts the admin's identity in the scope.
Each tool checks its arguments against its input schema, calls a service's admin API (or the
proxy's own approvals and keys) as that admin, and answers structured content matching its
output schema; a failure is an `isError` result carrying the service's message.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import jsonschema
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send
from warden_common.errors import WardenError

from warden_proxy.admin_mcp.apis import AdminApis, ToolFailed
from warden_proxy.admin_mcp.auth import AdminAuth, AdminIdentity
from warden_proxy.admin_mcp.calls import AdminCall
from warden_proxy.admin_mcp.catalog import CATALOG_TOOLS
from warden_proxy.admin_mcp.connections import CONNECTION_TOOLS
from warden_proxy.admin_mcp.operations import OPERATION_TOOLS
from warden_proxy.admin_mcp.toolkit import AdminTool
from warden_proxy.agents import AgentKeys
from warden_proxy.approvals import Approvals

__all__ = ["ADMIN_TOOLS", "AdminMcp"]

log = logging.getLogger(__name__)
_SCOPE_KEY = "warden.admin"

ADMIN_TOOLS: dict[str, AdminTool] = {t.name: t for t in (*CONNECTION_TOOLS, *CATALOG_TOOLS, *OPERATION_TOOLS)}
_VALIDATORS = {n: jsonschema.Draft202012Validator(t.input_schema) for n, t in ADMIN_TOOLS.items()}


def _failed(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


def check_arguments(name: str, arguments: dict[str, Any]) -> str | None:
    """None when the arguments fit the tool's input schema, else a message naming the field
    (never the value: it may be a secret)."""
    err = jsonschema.exceptions.best_match(_VALIDATORS[name].iter_errors(arguments))
    if err is None:
        return None
    where = ".".join(str(p) for p in err.absolute_path) or "(arguments)"
    what = err.validator
    if what == "required" or what == "additionalProperties":
        return f"invalid arguments: {err.message}"
    limit = (
        err.validator_value
        if what
        in ("maxLength", "minLength", "maximum", "minimum", "maxItems", "minItems", "pattern", "enum", "type", "format")
        else None
    )
    shown = f" ({what} {json.dumps(limit)})" if limit is not None else f" ({what})"
    return f"invalid argument {where}: does not satisfy the schema{shown}"


class AdminMcp:
    def __init__(
        self,
        *,
        auth: AdminAuth,
        apis: AdminApis,
        approvals: Approvals,
        keys: AgentKeys,
        allowed_hosts: list[str],
        consent_wait_s: float,
    ) -> None:
        self.auth = auth
        self.apis = apis
        self.approvals = approvals
        self.keys = keys
        self.consent_wait_s = consent_wait_s
        self.server: Server[Any] = Server(
            "warden-admin",
            version="0.1.0",
            instructions=(
                "Warden's administration: connections to remote MCP servers, their tools, profiles and "
                "grants, approvals, and the audit log. Every action is audited as yours."
            ),
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=bool(allowed_hosts),
            allowed_hosts=allowed_hosts,
            allowed_origins=[f"http://{h}" for h in allowed_hosts] + [f"https://{h}" for h in allowed_hosts],
        )
        self.manager = StreamableHTTPSessionManager(app=self.server, security_settings=security)
        self._app = StreamableHTTPASGIApp(self.manager)
        self._tools = [t.wire() for t in ADMIN_TOOLS.values()]

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self._tools)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        scope = getattr(ctx.request, "scope", None) or {}
        admin = scope.get(_SCOPE_KEY)
        if not isinstance(admin, AdminIdentity):
            raise MCPError(types.INVALID_REQUEST, "not authenticated")
        tool = ADMIN_TOOLS.get(params.name)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool: {params.name}")
        args = dict(params.arguments or {})
        if (problem := check_arguments(tool.name, args)) is not None:
            return _failed(problem)
        call = AdminCall(admin, self.apis, self.approvals, self.keys, ctx, self.consent_wait_s)
        try:
            out = await tool.handler(call, args)
        except ToolFailed as e:
            return _failed(e.message)
        except WardenError as e:
            return _failed(e.message)
        except ValidationError as e:
            fields = ", ".join(".".join(str(p) for p in err["loc"]) for err in e.errors()[:5])
            return _failed(f"invalid arguments: {fields}")
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps(out, ensure_ascii=False, default=str))],
            structured_content=out,
        )

    # -- ASGI --------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        authorization = None
        for k, v in scope.get("headers", []):
            if k.lower() == b"authorization":
                authorization = v.decode("latin-1")
        try:
            scope[_SCOPE_KEY] = await self.auth.authenticate(authorization)
        except WardenError as e:
            await _unauthorized(send, e.message, presented=bool(authorization))
            return
        await self._app(scope, receive, send)


async def _unauthorized(send: Send, message: str, *, presented: bool) -> None:
    challenge = 'Bearer realm="warden-admin", error="invalid_token"' if presented else 'Bearer realm="warden-admin"'
    body = json.dumps(
        {"error": "invalid_token" if presented else "unauthorized", "error_description": message}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", challenge.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
