"""The MCP endpoint agents connect to (streamable HTTP at /mcp).

An ASGI guard authenticates every request with an agent API key before the MCP
machinery sees it (401 + Warden's RFC 9728 metadata otherwise) and puts the
principal in the request scope; the tool handlers read it from there.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.types import Receive, Scope, Send
from warden_common.contracts import ErrorCode
from warden_common.errors import WardenError

from warden_proxy.agents import AgentKeys, Principal
from warden_proxy.errors import InvalidArguments
from warden_proxy.service import CallPipeline

__all__ = ["McpEndpoint"]

log = logging.getLogger(__name__)
_SCOPE_KEY = "warden.principal"

# Codes that mean "this tool does not exist for you": a JSON-RPC error, like an unknown tool.
_REFUSED = {ErrorCode.forbidden, ErrorCode.not_found}


def _principal(ctx: ServerRequestContext[Any, Any]) -> Principal:
    req = ctx.request
    scope = getattr(req, "scope", None) or {}
    p = scope.get(_SCOPE_KEY)
    if not isinstance(p, Principal):
        raise MCPError(types.INVALID_REQUEST, "not authenticated")
    return p


class McpEndpoint:
    def __init__(self, pipeline: CallPipeline, keys: AgentKeys, *, resource_url: str, allowed_hosts: list[str]) -> None:
        self.pipeline = pipeline
        self.keys = keys
        self.resource_url = resource_url
        self.server: Server[Any] = Server(
            "warden",
            version="0.1.0",
            instructions="Warden: governed access to your organization's MCP tools.",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=bool(allowed_hosts),
            allowed_hosts=allowed_hosts,
            allowed_origins=[f"http://{h}" for h in allowed_hosts] + [f"https://{h}" for h in allowed_hosts],
        )
        self.manager = StreamableHTTPSessionManager(app=self.server, security_settings=security)
        self._mcp_app = StreamableHTTPASGIApp(self.manager)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        p = _principal(ctx)
        try:
            tools = await self.pipeline.visible_tools(p.profile)
        except WardenError as e:
            raise MCPError(types.INTERNAL_ERROR, f"could not list tools: {e.message}") from None
        return types.ListToolsResult(
            tools=[types.Tool(name=t.name, description=t.description, inputSchema=t.input_schema) for t in tools]
        )

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        p = _principal(ctx)
        try:
            r = await self.pipeline.call(p, params.name, dict(params.arguments or {}))
        except InvalidArguments as e:
            raise MCPError(types.INVALID_PARAMS, e.message, data=e.details) from None
        except WardenError as e:
            if e.code in _REFUSED:
                raise MCPError(types.INVALID_PARAMS, f"unknown tool: {params.name}") from None
            return types.CallToolResult(content=[types.TextContent(type="text", text=e.message)], isError=True)
        return types.CallToolResult.model_validate(
            {"content": r.content, "structuredContent": r.structured_content, "isError": r.is_error}
        )

    # -- ASGI --------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._mcp_app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            principal = await self.keys.authenticate(headers.get("authorization"))
        except WardenError as e:
            await self._unauthorized(send, e.message)
            return
        scope[_SCOPE_KEY] = principal
        await self._mcp_app(scope, receive, send)

    async def _unauthorized(self, send: Send, message: str) -> None:
        meta = self.resource_url.rstrip("/").replace("/mcp", "") + "/.well-known/oauth-protected-resource/mcp"
        body = json.dumps({"error": "invalid_token", "error_description": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", f'Bearer error="invalid_token", resource_metadata="{meta}"'.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def protected_resource_metadata(resource_url: str) -> dict[str, Any]:
    """RFC 9728 metadata for the MCP endpoint: agents authenticate with Warden API keys."""
    return {
        "resource": resource_url,
        "authorization_servers": [],
        "bearer_methods_supported": ["header"],
        "resource_name": "Warden MCP gateway",
        "resource_documentation": "Authenticate with an agent API key: Authorization: Bearer wk_...",
    }
