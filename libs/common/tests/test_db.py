import asyncio

import asyncpg
import pytest
from pydantic import SecretStr
from warden_common.db import Database, MigrationError
from warden_common.settings import PostgresSettings


async def test_migrations_apply_once_even_from_two_replicas_at_once(dsn):
    a = Database(PostgresSettings(dsn=SecretStr(dsn)), "migtest")
    b = Database(PostgresSettings(dsn=SecretStr(dsn)), "migtest")
    await asyncio.gather(a.connect("migpkg"), b.connect("migpkg"))
    try:
        rows = await a.pool.fetch("SELECT version FROM _migrations ORDER BY version")
        assert [r["version"] for r in rows] == [1, 2]
        assert await a.pool.fetchval("SELECT count(*) FROM things") == 1
    finally:
        await a.close()
        await b.close()
    again = Database(PostgresSettings(dsn=SecretStr(dsn)), "migtest")
    await again.connect("migpkg")
    assert await again.pool.fetchval("SELECT count(*) FROM things") == 1
    await again.close()


async def test_an_edited_applied_migration_stops_the_start(dsn):
    db = Database(PostgresSettings(dsn=SecretStr(dsn)), "migtest")
    await db.connect("migpkg")
    await db.close()
    conn = await asyncpg.connect(dsn)
    await conn.execute("UPDATE migtest._migrations SET checksum = 'x' WHERE version = 1")
    await conn.close()
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await Database(PostgresSettings(dsn=SecretStr(dsn)), "migtest").connect("migpkg")


def test_schema_names_are_checked():
    with pytest.raises(ValueError):
        Database(PostgresSettings(dsn=SecretStr("postgresql://x")), 'bad"; drop')
