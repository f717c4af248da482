"""Cross-service fixtures: one isolated Warden stack per test session.

NATS and Postgres come from NATS_URL / DATABASE_URL when set (CI and this machine),
otherwise the tests start their own from the same packages as `warden run`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from support.infra import drop_stream, fresh_database, nats_server, postgres_server, unique_root
from warden_cli.embedded import SERVICES, Stack, StackConfig, free_port
from warden_common.contracts import durable_calls_stream_name, events_stream_name


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
    root = unique_root()
    async with fresh_database(admin_dsn) as dsn:
        cfg = StackConfig(
            data_dir=Path(tmp_path_factory.mktemp("warden")),
            root=root,
            nats_url=nats_url,
            database_url=dsn,
            ports={name: free_port() for name, _, _ in SERVICES},
            admin_token="adm-" + secrets.token_urlsafe(24),
            extra_env={
                "proxy": {
                    "WARDEN_PROXY_APPROVAL_TIMEOUT_S": "10",
                    "WARDEN_PROXY_DURABLE_ACK_WAIT_S": "3",
                    "WARDEN_PROXY_BREAKER_THRESHOLD": "3",
                }
            },
        )
        st = Stack(cfg)
        try:
            await st.start()
            yield st
        finally:
            st.stop()
            await drop_stream(nats_url, events_stream_name(root))
            await drop_stream(nats_url, durable_calls_stream_name(root))
