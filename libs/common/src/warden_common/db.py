"""Postgres: one pool per service, its own schema, plain-SQL migrations at start.

Migrations are `NNNN_name.sql` files shipped in the service's `migrations` package.
They are applied in order, each in its own transaction, recorded in
`<schema>._migrations` with a checksum, under an advisory lock so two replicas
starting at once apply each file exactly once. Re-running is a no-op; an applied
file that changed afterwards stops the start with a clear error.
"""

from __future__ import annotations

import hashlib
import logging
import re
from importlib import resources
from typing import Any

import asyncpg

from warden_common.errors import Unavailable, WardenError
from warden_common.settings import PostgresSettings

__all__ = ["Database", "MigrationError"]

log = logging.getLogger(__name__)
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(WardenError):
    pass


class Database:
    def __init__(self, settings: PostgresSettings, schema: str) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise ValueError(f"bad schema name {schema!r}")
        self.settings = settings
        self.schema = schema
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise Unavailable("database pool is not open")
        return self._pool

    async def connect(self, migrations_package: str | None = None) -> None:
        dsn = self.settings.dsn.get_secret_value()
        try:
            conn = await asyncpg.connect(dsn, timeout=self.settings.command_timeout_s)
        except (OSError, asyncpg.PostgresError) as e:
            raise Unavailable(f"cannot reach Postgres: {type(e).__name__}") from None
        try:
            if migrations_package:
                await self._migrate(conn, migrations_package)
            else:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        finally:
            await conn.close()
        self._pool = await asyncpg.create_pool(
            dsn,
            min_size=self.settings.pool_min,
            max_size=self.settings.pool_max,
            command_timeout=self.settings.command_timeout_s,
            server_settings={"search_path": self.schema},
            init=_init_connection,
        )

    async def _migrate(self, conn: asyncpg.Connection, package: str) -> None:
        files = sorted(
            (m.group(1), m.group(2), f.read_text())
            for f in resources.files(package).iterdir()
            if (m := _FILE.match(f.name))
        )
        lock_key = int.from_bytes(
            hashlib.sha256(f"warden.migrate.{self.schema}".encode()).digest()[:8],
            "big",
            signed=True,
        )
        await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(f'SET search_path TO "{self.schema}"')
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS _migrations ("
                " version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied = {
                r["version"]: r["checksum"] for r in await conn.fetch("SELECT version, checksum FROM _migrations")
            }
            for version_s, name, sql in files:
                version = int(version_s)
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if version in applied:
                    if applied[version] != checksum:
                        raise MigrationError(
                            f"migration {version_s}_{name}.sql of schema {self.schema} changed after it was applied; "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO _migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        version,
                        name,
                        checksum,
                    )
                log.info("applied migration %s_%s to schema %s", version_s, name, self.schema)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)

    async def ping(self) -> None:
        async with self.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1", timeout=2)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


async def _init_connection(conn: Any) -> None:
    import json

    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
