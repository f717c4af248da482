"""Admin steps against a running stack's HTTP APIs, for tests."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from warden_cli.embedded import Stack


class Admin:
    def __init__(self, stack: Stack, http: httpx.AsyncClient) -> None:
        self.stack = stack
        self.http = http
        self.responses: list[str] = []

    async def req(
        self, method: str, service: str, path: str, expect: int | tuple[int, ...] = (200, 201, 204), **kw: Any
    ) -> Any:
        r = await self.http.request(method, f"{self.stack.urls[service]}{path}", **kw)
        self.responses.append(r.text)
        ok = (expect,) if isinstance(expect, int) else expect
        assert r.status_code in ok, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    async def connector(self, url: str, token: str | None, name: str | None = None, **extra: Any) -> str:
        name = name or "c" + secrets.token_hex(4)
        auth = {"type": "bearer", "token": token} if token else {"type": "none"}
        await self.req("POST", "connectors", "/v1/connectors", json={"name": name, "url": url, "auth": auth, **extra})
        return name

    async def register(self, connector: str, tools: list[dict[str, Any]] | None = None) -> list[str]:
        body: dict[str, Any] = {} if tools is None else {"tools": tools}
        return list((await self.req("POST", "registry", f"/v1/connectors/{connector}/tools", json=body))["registered"])

    async def profile(self, grants: list[str], name: str | None = None, read_only: bool = False) -> str:
        name = name or "p" + secrets.token_hex(4)
        await self.req("POST", "registry", "/v1/profiles", json={"name": name, "description": "test"})
        for g in grants:
            await self.req(
                "POST",
                "registry",
                f"/v1/profiles/{name}/grants",
                json={"tool": g, "read_only": read_only, "reason": "test"},
            )
        return name

    async def key(self, profile: str) -> str:
        return str((await self.req("POST", "proxy", "/v1/agent-keys", json={"name": "t", "profile": profile}))["key"])

    async def setup(
        self, url: str, token: str | None, grants_suffix: str = "*", tools: list[dict[str, Any]] | None = None
    ) -> tuple[str, str, str]:
        """connector + registered tools + profile granted `<connector>__<suffix>` + agent key."""
        c = await self.connector(url, token)
        await self.register(c, tools)
        p = await self.profile([f"{c}__{grants_suffix}"])
        return c, p, await self.key(p)


@asynccontextmanager
async def admin_client(stack: Stack) -> AsyncIterator[Admin]:
    async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {stack.admin_token}"}) as http:
        yield Admin(stack, http)


@asynccontextmanager
async def agent(stack: Stack, key: str, *, base_url: str | None = None, **kw: Any) -> AsyncIterator[Client]:
    """An MCP client of the proxy's `/mcp` (or another replica's, `base_url`) with this agent key
    (or JWT); `kw` goes to `mcp.Client` (callbacks, `mode="legacy"` for a session)."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120)
    url = f"{base_url or stack.urls['proxy']}/mcp"
    try:
        async with Client(streamable_http_client(url, http_client=http), **kw) as c:
            yield c
    finally:
        await http.aclose()
