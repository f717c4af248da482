"""A small demo MCP server (streamable HTTP) that requires a static bearer token.

`python -m warden_cli.demo_server --port 8090` with the token in WARDEN_DEMO_TOKEN.
Used by `warden run` (already connected as connector `demo`) and by the tests.
"""

from __future__ import annotations

import argparse
import hmac
import os
from datetime import UTC, datetime
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["build_app", "build_server"]


def build_server() -> MCPServer:
    mcp = MCPServer("warden-demo")

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
    def utc_now() -> str:
        """The current UTC time, ISO 8601."""
        return datetime.now(UTC).isoformat()

    @mcp.tool(annotations=ToolAnnotations(destructive_hint=True))
    def delete_note(note_id: str) -> str:
        """Delete a note by id (demo: nothing is really deleted)."""
        return f"deleted {note_id}"

    return mcp


class BearerGate:
    """Refuse every request without the expected bearer token; remember what was sent."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.seen: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            auth = dict(scope.get("headers", [])).get(b"authorization", b"")
            self.seen.append(auth)
            if not hmac.compare_digest(auth, self.expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"www-authenticate", b"Bearer"), (b"content-length", b"0")],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


def build_app(token: str, server: MCPServer | None = None) -> Any:
    srv = server or build_server()
    return BearerGate(srv.streamable_http_app(), token)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8090)
    args = ap.parse_args()
    token = os.environ.get("WARDEN_DEMO_TOKEN")
    if not token:
        raise SystemExit("demo_server: set WARDEN_DEMO_TOKEN")
    uvicorn.run(build_app(token), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
