"""The upstream for the proxy benchmark: a stateless MCP server with an echo tool."""

from __future__ import annotations

import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

srv = MCPServer("bench-echo")


@srv.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


if __name__ == "__main__":
    uvicorn.run(
        srv.streamable_http_app(stateless_http=True, json_response=True),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
    )
