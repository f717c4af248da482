"""What a benchmark's embedded stack makes on a shared NATS and Postgres (a database of its
own, its streams), and dropping it again afterwards."""

from __future__ import annotations

import contextlib
import secrets

import asyncpg
import nats
from warden_cli.embedded import StackConfig
from warden_common.contracts import durable_calls_stream_name, events_stream_name

__all__ = ["clean", "use_fresh_database"]


async def use_fresh_database(cfg: StackConfig, admin_dsn: str | None, prefix: str = "warden_bench_") -> None:
    """With `admin_dsn` (the machine's Postgres), give the stack a new database on it."""
    if not admin_dsn:
        return
    db = prefix + secrets.token_hex(4)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{db}"')
    finally:
        await conn.close()
    cfg.database_url = admin_dsn.rsplit("/", 1)[0] + "/" + db


async def clean(cfg: StackConfig, admin_dsn: str | None) -> None:
    """Drop the run's streams (on a shared NATS) and its database (made by `use_fresh_database`)."""
    if cfg.nats_url:
        nc = await nats.connect(cfg.nats_url)
        try:
            for stream in (events_stream_name(cfg.root), durable_calls_stream_name(cfg.root)):
                with contextlib.suppress(nats.js.errors.NotFoundError):  # never made: nothing to drop
                    await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()
    if admin_dsn and cfg.database_url:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{cfg.database_url.rsplit("/", 1)[1]}" WITH (FORCE)')
        finally:
            await conn.close()
