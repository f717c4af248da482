"""SQL of the registry schema."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

__all__ = ["Store", "TOOL_COLUMNS"]

TOOL_COLUMNS = (
    "name, connector, alias, upstream_name, description, input_schema, annotations, operation, auto_approve,"
    " deferred, favorite, enabled, schema_valid, pin_hash, held, drift, registered_by, created_at, updated_at"
)
_TOOL_FIELDS = {"operation", "auto_approve", "deferred", "favorite", "enabled"}


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # -- tools ---------------------------------------------------------------------------
    async def all_tools(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(f"SELECT {TOOL_COLUMNS} FROM tools ORDER BY name")

    async def tools_of(self, connector: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(f"SELECT {TOOL_COLUMNS} FROM tools WHERE connector = $1 ORDER BY name", connector)

    async def tool(self, name: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"SELECT {TOOL_COLUMNS} FROM tools WHERE name = $1", name)

    async def names_taken(self, names: list[str]) -> set[str]:
        rows = await self.pool.fetch("SELECT name FROM tools WHERE name = ANY($1::text[])", names)
        return {r["name"] for r in rows}

    async def insert_tools(self, rows: list[tuple[Any, ...]]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO tools (name, connector, alias, upstream_name, description, input_schema, annotations,"
                " operation, auto_approve, deferred, favorite, schema_valid, pin_hash, registered_by)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
                rows,
            )

    async def update_tool(self, name: str, fields: dict[str, Any]) -> asyncpg.Record | None:
        sets, args = [], []
        for i, (k, v) in enumerate(fields.items(), start=2):
            sets.append(f"{k} = ${i}")
            args.append(v)
        sets.append("updated_at = now()")
        return await self.pool.fetchrow(
            f"UPDATE tools SET {', '.join(sets)} WHERE name = $1 RETURNING {TOOL_COLUMNS}", name, *args
        )

    async def delete_tool(self, name: str) -> bool:
        return (await self.pool.execute("DELETE FROM tools WHERE name = $1", name)).endswith(" 1")

    async def connector_settings(self, connector: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow("SELECT * FROM connector_settings WHERE connector = $1", connector)

    async def set_connector_settings(self, connector: str, **fields: Any) -> None:
        cols = ", ".join(fields)
        vals = ", ".join(f"${i}" for i in range(2, len(fields) + 2))
        upd = ", ".join(f"{k} = EXCLUDED.{k}" for k in fields) or "connector = EXCLUDED.connector"
        head = f"INSERT INTO connector_settings (connector{', ' + cols if cols else ''})"
        await self.pool.execute(
            f"{head} VALUES ($1{', ' + vals if vals else ''}) ON CONFLICT (connector) DO UPDATE SET {upd}",
            connector,
            *fields.values(),
        )

    async def connectors(self) -> list[str]:
        return [r["connector"] for r in await self.pool.fetch("SELECT DISTINCT connector FROM tools ORDER BY 1")]

    # -- profiles and grants ---------------------------------------------------------------
    async def insert_profile(self, name: str, description: str, actor: str) -> bool:
        res = await self.pool.execute(
            "INSERT INTO profiles (name, description, created_by) VALUES ($1,$2,$3) ON CONFLICT DO NOTHING",
            name,
            description,
            actor,
        )
        return res.endswith(" 1")

    async def profiles(self) -> list[asyncpg.Record]:
        return await self.pool.fetch("SELECT name, description, created_by, created_at FROM profiles ORDER BY name")

    async def profile(self, name: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT name, description, created_by, created_at FROM profiles WHERE name = $1", name
        )

    async def delete_profile(self, name: str) -> bool:
        return (await self.pool.execute("DELETE FROM profiles WHERE name = $1", name)).endswith(" 1")

    async def grants(self, profile: str | None = None) -> list[asyncpg.Record]:
        if profile is None:
            return await self.pool.fetch("SELECT * FROM grants ORDER BY created_at")
        return await self.pool.fetch("SELECT * FROM grants WHERE profile = $1 ORDER BY created_at", profile)

    async def insert_grant(self, profile: str, tool: str, read_only: bool, reason: str, actor: str) -> asyncpg.Record:
        return await self.pool.fetchrow(
            "INSERT INTO grants (id, profile, tool, read_only, reason, granted_by) VALUES ($1,$2,$3,$4,$5,$6)"
            " RETURNING *",
            uuid.uuid4(),
            profile,
            tool,
            read_only,
            reason,
            actor,
        )

    async def delete_grant(self, profile: str, grant_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "DELETE FROM grants WHERE profile = $1 AND id = $2 RETURNING *", profile, grant_id
        )
