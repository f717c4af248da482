"""Helpers for the audit tests: a fresh database, the audit app in-process, a publisher."""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import nats
import nats.js.errors
import uvicorn
from warden_audit.app import create_app
from warden_audit.handlers import DURABLE
from warden_audit.settings import Settings
from warden_common.bus import Bus
from warden_common.contracts import Event, Service, events_stream_name
from warden_common.settings import NatsSettings

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
ADMIN_DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
T = TypeVar("T")


def unique_root() -> str:
    return "t" + uuid.uuid4().hex[:10]


def dsn_for(admin_dsn: str, db: str) -> str:
    u = urlsplit(admin_dsn)
    return urlunsplit((u.scheme, u.netloc, "/" + db, u.query, u.fragment))


@asynccontextmanager
async def fresh_database(admin_dsn: str = ADMIN_DSN) -> AsyncIterator[str]:
    name = "audit_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield dsn_for(admin_dsn, name)
    finally:
        conn = await asyncpg.connect(admin_dsn, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def drop_stream(nats_url: str, stream: str) -> None:
    nc = await nats.connect(nats_url, connect_timeout=5)
    try:
        await nc.jetstream().delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


async def wait_for(check: Callable[[], Awaitable[T | None]], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                v = await check()
                if v:
                    return v
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


@dataclass
class Audit:
    url: str
    token: str
    root: str
    dsn: str
    nats_url: str
    settings: Settings

    def client(self, **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"authorization": f"Bearer {self.token}"}, timeout=30, **kw)

    async def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn, server_settings={"search_path": "audit"})
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def drained(self) -> bool:
        """True when the audit consumer has nothing pending and nothing unacked."""
        nc = await nats.connect(self.nats_url)
        try:
            info = await nc.jetstream().consumer_info(events_stream_name(self.root), DURABLE)
            return info.num_pending == 0 and info.num_ack_pending == 0
        finally:
            await nc.close()


def audit_env(root: str, dsn: str, nats_url: str, token: str, **extra: str) -> dict[str, str]:
    return {
        "WARDEN_AUDIT_NATS__URL": nats_url,
        "WARDEN_AUDIT_NATS__ROOT": root,
        "WARDEN_AUDIT_POSTGRES__DSN": dsn,
        "WARDEN_AUDIT_ADMIN_TOKEN": token,
        "WARDEN_AUDIT_ACK_WAIT_S": "5",
        **extra,
    }


@asynccontextmanager
async def run_audit(
    *, root: str | None = None, dsn: str | None = None, nats_url: str = NATS_URL, **overrides: Any
) -> AsyncIterator[Audit]:
    """The audit app in this process, served by uvicorn on a free port."""
    root = root or unique_root()
    token = "adm-" + secrets.token_urlsafe(24)
    async with contextlib_nullable_db(dsn) as db:
        settings = Settings(
            nats=NatsSettings(url=nats_url, root=root),
            postgres={"dsn": db},
            admin_token=token,
            ack_wait_s=5,
            **overrides,
        )
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_config=None, lifespan="on")
        )
        task = asyncio.create_task(server.serve())
        try:
            async with asyncio.timeout(30):
                while not server.started:
                    if task.done():
                        task.result()
                        raise AssertionError("audit app stopped during start-up")
                    await asyncio.sleep(0.02)
            port = server.servers[0].sockets[0].getsockname()[1]
            yield Audit(f"http://127.0.0.1:{port}", token, root, db, nats_url, settings)
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, timeout=30)
            await drop_stream(nats_url, events_stream_name(root))


@asynccontextmanager
async def contextlib_nullable_db(dsn: str | None) -> AsyncIterator[str]:
    if dsn is not None:
        yield dsn
        return
    async with fresh_database() as db:
        yield db


@asynccontextmanager
async def publisher(root: str, nats_url: str = NATS_URL, service: Service = Service.proxy) -> AsyncIterator[Bus]:
    bus = Bus(NatsSettings(url=nats_url, root=root), service)
    await bus.connect()
    try:
        await bus.ensure_events_stream()
        yield bus
    finally:
        await bus.close()


def event(type: str, *, source: Service = Service.proxy, **kw: Any) -> Event:
    return Event(type=type, source=source, **kw)
