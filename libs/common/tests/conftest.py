from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from support.infra import fresh_database, nats_server, postgres_server
from warden_common.bus import Bus
from warden_common.contracts import Service, events_stream_name
from warden_common.settings import NatsSettings


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    with nats_server() as url:
        yield url


@pytest.fixture(scope="session")
def admin_dsn() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture
async def dsn(admin_dsn: str) -> AsyncIterator[str]:
    async with fresh_database(admin_dsn) as d:
        yield d


@pytest.fixture
async def buses(nats_url: str) -> AsyncIterator[tuple[Bus, Bus]]:
    """Two connected buses on one fresh subject root (connectors answers, proxy asks, 2 s
    timeout), the events stream made; dropped afterwards."""
    root = "t" + uuid.uuid4().hex[:10]
    a = Bus(NatsSettings(url=nats_url, root=root), Service.connectors)
    b = Bus(NatsSettings(url=nats_url, root=root, request_timeout_s=2), Service.proxy)
    await a.connect()
    await b.connect()
    await a.ensure_events_stream()
    yield a, b
    await a.close()
    await b.close()
    nc = await nats.connect(nats_url)
    await nc.jetstream().delete_stream(events_stream_name(root))
    await nc.close()
