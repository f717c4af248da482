from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from support.infra import fresh_database, nats_server, postgres_server


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
