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
