"""The upstream for the proxy benchmark: a stateless MCP server with an echo tool.

    python -m bench.proxy.echo_server PORT [--workers N]

A real MCP server speaking streamable HTTP: the `mcp` package's low-level `Server`,
stateless with JSON responses (no per-request session task, no SSE), under uvicorn with
uvloop and httptools when installed, without the SDK's per-request INFO logging. It is
the upstream for both the direct and the proxied calls of a run, so the direct baseline
is the same server the proxy talks to; `--workers` runs several processes on one port.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

_ECHO = types.Tool(
    name="echo",
    description="Echo the text back.",
    inputSchema={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
)


async def _list_tools(
    _: ServerRequestContext[Any, Any], __: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[_ECHO])


async def _call_tool(_: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> types.CallToolResult:
    if params.name != "echo":
        raise ValueError(f"unknown tool {params.name}")
    text = str((params.arguments or {}).get("text", ""))
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


def app() -> Any:
    srv: Server[Any] = Server("bench-echo", on_list_tools=_list_tools, on_call_tool=_call_tool)
    return srv.streamable_http_app(stateless_http=True, json_response=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    logging.getLogger("mcp").setLevel(logging.WARNING)
    fast = importlib.util.find_spec("uvloop") is not None
    uvicorn.run(
        "bench.proxy.echo_server:app",
        factory=True,
        host="127.0.0.1",
        port=a.port,
        workers=a.workers if a.workers > 1 else None,
        loop="uvloop" if fast else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
