"""A real MCP server (built with the `mcp` package) on a loopback port, in-process."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from warden_cli.demo_server import BearerGate, build_app

from support.infra import free_port


@dataclass
class Upstream:
    url: str
    token: str
    gate: BearerGate


async def read_body(receive: Any) -> bytes:
    """An ASGI request's whole body (every `http.request` message until `more_body` is false)."""
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


@asynccontextmanager
async def serve_asgi(app: Any, port: int | None = None) -> AsyncIterator[int]:
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task


@asynccontextmanager
async def bearer_upstream(token: str | None = None) -> AsyncIterator[Upstream]:
    token = token or "upstream-" + secrets.token_urlsafe(24)
    app = build_app(token)
    async with serve_asgi(app) as port:
        yield Upstream(url=f"http://127.0.0.1:{port}/mcp", token=token, gate=app)


class Trouble:
    """Knobs a test turns on a running upstream."""

    def __init__(self) -> None:
        self.status: int | None = None  # answer every HTTP request with this status
        self.executions: dict[str, int] = {}
        self.release = asyncio.Event()  # `wait_for_release` blocks until set


class TroubleGate:
    def __init__(self, app: Any, token: str, trouble: Trouble) -> None:
        self.app = app
        self.token = token
        self.trouble = trouble
        self.seen: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            auth = dict(scope.get("headers", [])).get(b"authorization", b"")
            self.seen.append(auth)
            status = self.trouble.status
            if status is None and auth != f"Bearer {self.token}".encode():
                status = 401
            if status is not None:
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [(b"content-length", b"0"), (b"www-authenticate", b"Bearer")],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


@dataclass
class TroubleUpstream:
    url: str
    token: str
    trouble: Trouble
    gate: TroubleGate


@asynccontextmanager
async def trouble_upstream() -> AsyncIterator[TroubleUpstream]:
    from mcp.server.mcpserver import MCPServer

    trouble = Trouble()
    srv = MCPServer("trouble")

    @srv.tool()
    def record(key: str) -> str:
        """Record one execution for `key` and return how many there were."""
        trouble.executions[key] = trouble.executions.get(key, 0) + 1
        return f"{key}:{trouble.executions[key]}"

    @srv.tool()
    async def wait_for_release(key: str) -> str:
        """Block until the test releases it, then record an execution."""
        await trouble.release.wait()
        trouble.executions[key] = trouble.executions.get(key, 0) + 1
        return f"released {key}"

    @srv.tool()
    def fail(reason: str) -> str:
        """Always fails with the reason."""
        from mcp.server.mcpserver.exceptions import ToolError

        raise ToolError(reason)

    @srv.tool()
    def typed(count: int, label: str) -> str:
        """Takes typed arguments."""
        return f"{label}x{count}"

    token = "trouble-" + secrets.token_urlsafe(24)
    gate = TroubleGate(srv.streamable_http_app(), token, trouble)
    async with serve_asgi(gate) as port:
        yield TroubleUpstream(url=f"http://127.0.0.1:{port}/mcp", token=token, trouble=trouble, gate=gate)


class HeaderGate:
    """Let a request through only when `check(headers)` is true; remember every request's headers."""

    def __init__(self, app: Any, check: Any) -> None:
        self.app = app
        self.check = check
        self.seen: list[dict[bytes, bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers", []))
            self.seen.append(headers)
            if not self.check(headers):
                await send({"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


@asynccontextmanager
async def header_upstream(check: Any) -> AsyncIterator[tuple[str, HeaderGate]]:
    from warden_cli.demo_server import build_server

    gate = HeaderGate(build_server().streamable_http_app(), check)
    async with serve_asgi(gate) as port:
        yield f"http://127.0.0.1:{port}/mcp", gate


@dataclass
class Catalog:
    """A mutable tool catalog served by a real MCP server (lowlevel `mcp` Server)."""

    tools: dict[str, dict[str, Any]]
    url: str = ""
    page_size: int = 100
    sessions: list[Any] = None  # type: ignore[assignment]
    called: list[str] = None  # type: ignore[assignment]  # the names tools/call was sent


@asynccontextmanager
async def catalog_upstream(tools: dict[str, dict[str, Any]], page_size: int = 100) -> AsyncIterator[Catalog]:
    """Each tool: {"description", "input_schema", "annotations"?, "title"?, "output_schema"?,
    "icons"?, "meta"?}. Calls echo their arguments."""
    import json as _json

    import mcp_types as types
    from mcp.server.lowlevel import Server

    cat = Catalog(tools=tools, page_size=page_size, sessions=[], called=[])

    async def list_tools(ctx: Any, params: Any) -> Any:
        if ctx.session not in cat.sessions:
            cat.sessions.append(ctx.session)
        names = sorted(cat.tools)
        start = int(params.cursor) if params is not None and getattr(params, "cursor", None) else 0
        page = names[start : start + cat.page_size]
        nxt = str(start + cat.page_size) if start + cat.page_size < len(names) else None
        out = []
        for n in page:
            t = cat.tools[n]
            out.append(
                types.Tool.model_validate(
                    {
                        "name": n,
                        "description": t.get("description"),
                        "inputSchema": t["input_schema"],
                        "annotations": t.get("annotations"),
                        **{
                            wire: t[k]
                            for k, wire in (
                                ("title", "title"),
                                ("output_schema", "outputSchema"),
                                ("icons", "icons"),
                                ("meta", "_meta"),
                            )
                            if k in t
                        },
                    }
                )
            )
        return types.ListToolsResult(tools=out, nextCursor=nxt)

    async def call_tool(ctx: Any, params: Any) -> Any:
        cat.called.append(params.name)
        return types.CallToolResult(content=[types.TextContent(type="text", text=_json.dumps(params.arguments or {}))])

    server = Server("catalog", on_list_tools=list_tools, on_call_tool=call_tool)
    async with serve_asgi(server.streamable_http_app()) as port:
        cat.url = f"http://127.0.0.1:{port}/mcp"
        yield cat
