"""A real MCP server (the `mcp` package) behind a gate that can make it misbehave: answer a
method with a body that is not JSON (as `application/json` or as an SSE event), or return
tool results with as many content items as asked."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import mcp_types as types

from support.upstream import serve_asgi

Garble = Literal["json", "sse"]
# a JSON-RPC answer cut off mid-way: what a crashed or buggy server sends
NOT_JSON = b'{"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "te'


@dataclass
class HostileUpstream:
    url: str
    token: str
    # method -> how to answer it with something that is not JSON
    garble: dict[str, Garble] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)  # tools/call names that reached the server


class _Gate:
    def __init__(self, app: Any, up: HostileUpstream) -> None:
        self.app = app
        self.up = up

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        auth = dict(scope.get("headers", [])).get(b"authorization", b"")
        if auth != f"Bearer {self.up.token}".encode():
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        messages = []
        body = b""
        while True:
            m = await receive()
            messages.append(m)
            if m["type"] == "http.request":
                body += m.get("body", b"")
                if not m.get("more_body"):
                    break
            else:
                break
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        method = doc.get("method") if isinstance(doc, dict) else None
        if isinstance(method, str) and (how := self.up.garble.get(method)) is not None:
            if how == "json":
                ctype, out = b"application/json", NOT_JSON
            else:
                ctype, out = b"text/event-stream", b"event: message\r\ndata: " + NOT_JSON + b"\r\n\r\n"
            headers = [(b"content-type", ctype), (b"content-length", str(len(out)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": out})
            return
        if method == "tools/call":
            self.up.calls.append(str((doc.get("params") or {}).get("name")))

        async def replay() -> Any:
            if messages:
                return messages.pop(0)
            return await receive()

        await self.app(scope, replay, send)


@asynccontextmanager
async def hostile_upstream() -> AsyncIterator[HostileUpstream]:
    from mcp.server.mcpserver import MCPServer

    srv = MCPServer("hostile")

    @srv.tool()
    def items(count: int) -> list[types.TextContent]:
        """Answer `count` content items."""
        return [types.TextContent(type="text", text=f"item {i}") for i in range(count)]

    @srv.tool()
    def echo(text: str) -> str:
        """Answer the text."""
        return text

    up = HostileUpstream(url="", token="hostile-" + secrets.token_urlsafe(24))
    async with serve_asgi(_Gate(srv.streamable_http_app(), up)) as port:
        up.url = f"http://127.0.0.1:{port}/mcp"
        yield up
