"""Test support of the registry: real MCP servers, a stand-in for the proxy's discovery,
the registry on a loopback port, and a bounded wait on events."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import nats
import uvicorn
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools.base import Tool
from mcp.types import Tool as MCPTool
from mcp.types import ToolAnnotations
from nats.aio.msg import Msg
from warden_common.bus import Bus
from warden_common.contracts import (
    UPSTREAM_LIST_TOOLS,
    Event,
    ListUpstreamTools,
    Service,
    UpstreamTool,
    UpstreamTools,
    events_stream_name,
)
from warden_common.errors import NotFound
from warden_common.settings import HttpSettings, NatsSettings, PostgresSettings
from warden_registry.app import create_app
from warden_registry.settings import Settings

__all__ = [
    "Events",
    "ProxyStandIn",
    "Registry",
    "Upstream",
    "free_port",
    "fresh_database",
    "proxy_stand_in",
    "subject_root",
    "mcp_tool",
    "mcp_upstream",
    "poll_until",
    "registry_settings",
    "run_registry",
    "serve_asgi",
    "unique",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[int]:
    """Serve an ASGI app with uvicorn on a free loopback port until the block ends."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)  # polling uvicorn's `started` flag, bounded above
        yield port
    finally:
        server.should_exit = True
        async with asyncio.timeout(20):
            await task


def _ok() -> str:
    return "ok"


def mcp_tool(
    name: str,
    description: str = "",
    schema: dict[str, Any] | None = None,
    annotations: ToolAnnotations | None = None,
) -> Tool:
    """A tool with exactly the name, description, schema and annotations an upstream announces."""
    return _TEMPLATE.model_copy(
        update={
            "name": name,
            "description": description,
            "parameters": schema if schema is not None else {"type": "object", "properties": {}},
            "annotations": annotations,
        }
    )


_TEMPLATE = Tool.from_function(_ok, name="template", description="template")


class ListingServer(MCPServer):
    """An MCP server whose listing a test can trim: hidden tools are not listed."""

    def __init__(self, tools: list[Tool]) -> None:
        super().__init__("registry-test-upstream", tools=tools, warn_on_duplicate_tools=False)
        self.hidden: set[str] = set()

    async def list_tools(self) -> list[MCPTool]:
        return [t for t in await super().list_tools() if t.name not in self.hidden]


@dataclass
class Upstream:
    url: str
    server: ListingServer
    tools: dict[str, Tool]

    def change(self, name: str, **fields: Any) -> None:
        """Change what the server announces for one tool (description, parameters, ...)."""
        for k, v in fields.items():
            setattr(self.tools[name], k, v)

    def hide(self, name: str) -> None:
        self.server.hidden.add(name)

    def show(self, name: str) -> None:
        self.server.hidden.discard(name)


@asynccontextmanager
async def mcp_upstream(tools: Iterable[Tool]) -> AsyncIterator[Upstream]:
    listed = list(tools)
    server = ListingServer(listed)
    async with serve_asgi(server.streamable_http_app()) as port:
        yield Upstream(f"http://127.0.0.1:{port}/mcp", server, {t.name: t for t in listed})


async def poll_until(check: Callable[[], Awaitable[bool]], timeout: float = 10, every: float = 0.02) -> None:
    """Ask `check` until it says yes, at most `timeout` seconds: for state that another process
    reaches after an event this test cannot observe directly."""
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(every)


@dataclass
class ProxyStandIn:
    """Answers UPSTREAM_LIST_TOOLS from the MCP server mapped to the connector name."""

    upstreams: dict[str, str] = field(default_factory=dict)
    # the id each connector's listing answers for (none: as an older proxy answers)
    connector_ids: dict[str, str] = field(default_factory=dict)
    listings: dict[str, list[UpstreamTool]] = field(default_factory=dict)
    requests: list[ListUpstreamTools] = field(default_factory=list)

    async def answer(self, req: ListUpstreamTools) -> UpstreamTools:
        self.requests.append(req)
        url = self.upstreams.get(req.connector)
        if url is None:
            raise NotFound(f"no connector {req.connector}")
        if req.cursor is None:  # a first page lists the server afresh
            self.listings[req.connector] = await self._list(url)
        tools = self.listings[req.connector]
        cid = self.connector_ids.get(req.connector)
        if req.page_size is None:
            return UpstreamTools(tools=tools, connector_id=cid)
        start = int(req.cursor or 0)
        end = start + req.page_size
        return UpstreamTools(
            tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None, connector_id=cid
        )

    @staticmethod
    async def _list(url: str) -> list[UpstreamTool]:
        out: list[UpstreamTool] = []
        async with Client(url) as c:
            cursor: str | None = None
            while True:
                page = await c.list_tools(cursor=cursor, cache_mode="bypass")
                out.extend(
                    UpstreamTool(
                        name=t.name,
                        description=t.description,
                        input_schema=t.input_schema,
                        annotations=t.annotations.model_dump(by_alias=True, exclude_none=True)
                        if t.annotations
                        else None,
                    )
                    for t in page.tools
                )
                cursor = page.next_cursor
                if not cursor:
                    return out


class Events:
    """Every event published under the run's root, with a bounded wait."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self._changed = asyncio.Condition()

    async def on_msg(self, msg: Msg) -> None:
        async with self._changed:
            self.seen.append(Event.model_validate_json(msg.data))
            self._changed.notify_all()

    async def wait(self, pred: Callable[[Event], bool], timeout: float = 10) -> Event:
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for e in self.seen:
                    if pred(e):
                        return e
                await self._changed.wait()

    def of(self, type: str, **refs: str) -> list[Event]:
        return [e for e in self.seen if e.type == type and all(getattr(e.refs, k) == v for k, v in refs.items())]


@dataclass
class Registry:
    url: str
    token: str
    settings: Settings
    http: httpx.AsyncClient

    async def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = await self.http.request(method, path, **kw)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None


def registry_settings(nats_url: str, root: str, dsn: str, **over: Any) -> Settings:
    return Settings(
        nats=NatsSettings(url=nats_url, root=root, request_timeout_s=10),
        postgres=PostgresSettings(dsn=dsn, pool_max=5),
        http=HttpSettings(port=0),
        admin_token="adm-" + secrets.token_urlsafe(24),
        refresh_period_s=over.pop("refresh_period_s", 0),
        # deterministic and instant; the hybrid engine has its own test (test_registry_search)
        search_engine=over.pop("search_engine", "lexical"),
        **over,
    )


@asynccontextmanager
async def run_registry(settings: Settings) -> AsyncIterator[Registry]:
    token = settings.admin_token.get_secret_value()
    async with serve_asgi(create_app(settings)) as port:
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
            yield Registry(url, token, settings, http)


def unique(prefix: str = "c") -> str:
    return prefix + secrets.token_hex(4)


# -- isolation --------------------------------------------------------------------------------


@asynccontextmanager
async def subject_root(nats_url: str) -> AsyncIterator[str]:
    """A unique NATS subject root; its events stream is deleted afterwards."""
    root = "treg" + uuid.uuid4().hex[:10]
    yield root
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_stream(events_stream_name(root))
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new database on DATABASE_URL's server, dropped afterwards."""
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = "treg_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield urlunsplit(urlsplit(admin)._replace(path=f"/{name}"))
    finally:
        conn = await asyncpg.connect(admin, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@asynccontextmanager
async def proxy_stand_in(nats_url: str, root: str) -> AsyncIterator[ProxyStandIn]:
    stand_in = ProxyStandIn()
    bus = Bus(NatsSettings(url=nats_url, root=root), Service.proxy)
    await bus.connect()
    await bus.serve(UPSTREAM_LIST_TOOLS, stand_in.answer)
    try:
        yield stand_in
    finally:
        await bus.close()
