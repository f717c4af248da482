"""Fixtures of the registry's tests, on real infrastructure.

- NATS from `NATS_URL` (default nats://127.0.0.1:4222) under a unique subject root per run.
- Postgres from `DATABASE_URL` (default postgresql://postgres@127.0.0.1:5432/postgres):
  a fresh database per run, dropped afterwards.
- The registry itself, served by uvicorn on a loopback port.
- Real MCP servers built with the `mcp` package, served in-process on loopback ports.
- A tiny stand-in for the proxy's one duty the registry needs: answer `UPSTREAM_LIST_TOOLS`
  by listing a real MCP server's tools (paged, as the contract allows).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import nats
import pytest
from registry_support import (
    Events,
    ProxyStandIn,
    Registry,
    fresh_database,
    proxy_stand_in,
    registry_settings,
    run_registry,
    subject_root,
)
from warden_common.bus import Bus
from warden_common.contracts import Service, events_wildcard
from warden_common.settings import NatsSettings


@pytest.fixture(scope="session")
def nats_url() -> str:
    return os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture(scope="session")
async def root(nats_url: str) -> AsyncIterator[str]:
    async with subject_root(nats_url) as r:
        yield r


@pytest.fixture(scope="session")
async def dsn() -> AsyncIterator[str]:
    async with fresh_database() as d:
        yield d


@pytest.fixture(scope="session")
async def proxy(nats_url: str, root: str) -> AsyncIterator[ProxyStandIn]:
    async with proxy_stand_in(nats_url, root) as stand_in:
        yield stand_in


@pytest.fixture(scope="session")
async def events(nats_url: str, root: str) -> AsyncIterator[Events]:
    ev = Events()
    nc = await nats.connect(nats_url)
    await nc.subscribe(events_wildcard(root), cb=ev.on_msg)
    await nc.flush()
    try:
        yield ev
    finally:
        await nc.close()


@pytest.fixture(scope="session")
async def registry(nats_url: str, root: str, dsn: str, proxy: ProxyStandIn, events: Events) -> AsyncIterator[Registry]:
    async with run_registry(registry_settings(nats_url, root, dsn)) as reg:
        yield reg


@pytest.fixture(scope="session")
async def bus(nats_url: str, root: str) -> AsyncIterator[Bus]:
    """A client of the registry's NATS subjects, as the proxy would be."""
    b = Bus(NatsSettings(url=nats_url, root=root, request_timeout_s=30), Service.proxy)
    await b.connect()
    try:
        yield b
    finally:
        await b.close()
