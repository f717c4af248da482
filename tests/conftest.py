"""Cross-service fixtures: one isolated Warden stack per test session.

NATS and Postgres come from NATS_URL / DATABASE_URL when set (CI and this machine),
otherwise the tests start their own from the same packages as `warden run`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from support.infra import isolated_stack, nats_server, postgres_server
from warden_cli.embedded import Stack


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    with nats_server() as url:
        yield url


@pytest.fixture(scope="session")
def admin_dsn() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(scope="session")
async def stack(nats_url: str, admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    proxy = {
        "WARDEN_PROXY_APPROVAL_TIMEOUT_S": "10",
        "WARDEN_PROXY_DURABLE_ACK_WAIT_S": "3",
        "WARDEN_PROXY_BREAKER_THRESHOLD": "3",
        # the one internal service the tests let act for end users (test_nats_caller_identity)
        "WARDEN_PROXY_ACT_FOR_USERS": '["trusted-svc"]',
    }
    async with isolated_stack(nats_url, admin_dsn, Path(tmp_path_factory.mktemp("warden")), {"proxy": proxy}) as st:
        yield st
