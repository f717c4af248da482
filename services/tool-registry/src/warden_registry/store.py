"""SQL of the registry's schema (`registry`): tools, connector settings, profiles, grants."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from warden_registry.errors import Conflict

__all__ = ["INSERT_COLUMNS", "Store"]

_TOOL_COLUMNS = (
    "name, connector, alias, upstream_name, description, input_schema, annotations, operation, auto_approve,"
    " deferred, favorite, enabled, schema_valid, pin_hash, held, missing, drift, registered_by, created_at,"
    " updated_at, connector_id, approver, title, output_schema, icons, meta, local_name"
)
INSERT_COLUMNS = (
    "name",
    "connector",
    "alias",
    "upstream_name",
    "description",
    "input_schema",
    "annotations",
    "operation",
    "auto_approve",
    "deferred",
    "favorite",
    "schema_valid",
    "pin_hash",
    "registered_by",
    "connector_id",
    "approver",
    "title",
    "output_schema",
    "icons",
    "meta",
    "local_name",
)
_UPDATABLE = {
    "operation",
    "auto_approve",
    "deferred",
    "favorite",
    "enabled",
    "description",
    "input_schema",
    "annotations",
    "schema_valid",
    "pin_hash",
    "held",
    "missing",
    "drift",
    "approver",
    "title",
    "output_schema",
    "icons",
    "meta",
}
_CONNECTOR_FIELDS = {"alias", "auto_approve_default", "cache_enabled", "refreshed_at", "approver_default"}
_INSERT_BATCH = 1000
_PROFILE_COLUMNS = "name, description, tool_names, created_by, created_at"
_PROFILE_FIELDS = {"description", "tool_names"}


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # -- the snapshot agents' answers are built on ------------------------------------------
    async def snapshot_rows(
        self,
    ) -> tuple[list[asyncpg.Record], list[asyncpg.Record], set[str], dict[str, str]]:
        """Tools, grants, cache-off connectors and each profile's naming, read at one instant."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            tools = await conn.fetch(
                f"SELECT {_TOOL_COLUMNS}, (SELECT s.approver_default FROM connector_settings s"
                " WHERE s.connector = tools.connector) AS approver_default FROM tools"
            )
            grants = await conn.fetch("SELECT profile, tool, read_only FROM grants")
            off = await conn.fetch("SELECT connector FROM connector_settings WHERE NOT cache_enabled")
            naming = await conn.fetch("SELECT name, tool_names FROM profiles WHERE tool_names <> 'namespaced'")
        return tools, grants, {r["connector"] for r in off}, {r["name"]: r["tool_names"] for r in naming}

    # -- tools ---------------------------------------------------------------------------
    async def all_tools(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(f"SELECT {_TOOL_COLUMNS} FROM tools ORDER BY name")

    async def tools_of(self, connector: str, conn: asyncpg.Connection | None = None) -> list[asyncpg.Record]:
        return await (conn or self.pool).fetch(
            f"SELECT {_TOOL_COLUMNS} FROM tools WHERE connector = $1 ORDER BY name", connector
        )

    @asynccontextmanager
    async def connector_lock(self, connector: str) -> AsyncIterator[asyncpg.Connection]:
        """A transaction holding the connector's refresh lock: replicas refresh it one at a time."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"registry.refresh.{connector}")
            yield conn

    async def tool(self, name: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"SELECT {_TOOL_COLUMNS} FROM tools WHERE name = $1", name)

    async def insert_tools(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert new tools in one transaction, in batches; a name taken meanwhile is a Conflict."""
        cols = ", ".join(INSERT_COLUMNS)
        params = ", ".join(f"${i}" for i in range(1, len(INSERT_COLUMNS) + 1))
        sql = f"INSERT INTO tools ({cols}) VALUES ({params})"
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                for i in range(0, len(rows), _INSERT_BATCH):
                    await conn.executemany(sql, rows[i : i + _INSERT_BATCH])
        except asyncpg.UniqueViolationError:
            raise Conflict("a tool with one of these names was registered meanwhile; discover and retry") from None

    async def names_taken(self, names: list[str]) -> set[str]:
        rows = await self.pool.fetch("SELECT name FROM tools WHERE name = ANY($1::text[])", names)
        return {r["name"] for r in rows}

    async def update_tool(
        self, name: str, fields: dict[str, Any], conn: asyncpg.Connection | None = None
    ) -> asyncpg.Record | None:
        bad = set(fields) - _UPDATABLE
        if bad:
            raise ValueError(f"not updatable: {sorted(bad)}")
        sets = [f"{k} = ${i}" for i, k in enumerate(fields, start=2)]
        sets.append("updated_at = now()")
        sql = f"UPDATE tools SET {', '.join(sets)} WHERE name = $1 RETURNING {_TOOL_COLUMNS}"
        return await (conn or self.pool).fetchrow(sql, name, *fields.values())

    async def delete_tool(self, connector: str, name: str) -> bool:
        res = await self.pool.execute("DELETE FROM tools WHERE name = $1 AND connector = $2", name, connector)
        return bool(res.endswith(" 1"))

    async def adopt_connector_id(self, connector: str, connector_id: str) -> int:
        """Record the connector's id on its tools registered before ids were recorded."""
        res = await self.pool.execute(
            "UPDATE tools SET connector_id = $2 WHERE connector = $1 AND connector_id IS NULL", connector, connector_id
        )
        return int(res.split()[-1])

    async def remove_connector(
        self,
        connector: str,
        connector_id: str | None,
        removed_at: datetime,
        doomed: Callable[[list[asyncpg.Record], list[asyncpg.Record], list[str], set[str]], list[uuid.UUID]],
    ) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
        """In one transaction: delete the tools a removed connector had (that id, or none
        recorded, registered before its removal), its settings when no tool of that name is
        left, and the grants `doomed(tools gone, every grant, names left, aliases)` picks.
        Answers the tools and the grants deleted."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"registry.refresh.{connector}")
            gone = await conn.fetch(
                "DELETE FROM tools WHERE connector = $1 AND created_at <= $3"
                " AND (connector_id = $2 OR connector_id IS NULL OR $2::text IS NULL)"
                " RETURNING name, alias, upstream_name, connector_id",
                connector,
                connector_id,
                removed_at,
            )
            left = await conn.fetch("SELECT name, connector FROM tools")
            aliases = {r["alias"] for r in gone}
            if not any(r["connector"] == connector for r in left):
                s = await conn.fetchrow(
                    "DELETE FROM connector_settings WHERE connector = $1 RETURNING alias", connector
                )
                aliases.add(s["alias"] if s is not None and s["alias"] else connector)
            grants = await conn.fetch("SELECT * FROM grants ORDER BY created_at, id")
            ids = doomed(gone, grants, [r["name"] for r in left], aliases)
            revoked = await conn.fetch("DELETE FROM grants WHERE id = ANY($1::uuid[]) RETURNING *", ids) if ids else []
        return gone, revoked

    async def connectors(self) -> list[asyncpg.Record]:
        """Every connector with registered tools, with its settings (defaults where none)."""
        return await self.pool.fetch(
            "SELECT t.connector, coalesce(s.cache_enabled, true) AS cache_enabled, s.refreshed_at"
            " FROM (SELECT DISTINCT connector FROM tools) t"
            " LEFT JOIN connector_settings s USING (connector) ORDER BY 1"
        )

    # -- connector settings ---------------------------------------------------------------
    async def connector_settings(self, connector: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT connector, alias, auto_approve_default, cache_enabled, refreshed_at, approver_default,"
            " (SELECT count(*) FROM tools t WHERE t.connector = s.connector) AS tools"
            " FROM connector_settings s WHERE connector = $1",
            connector,
        )

    async def all_connector_settings(self) -> list[asyncpg.Record]:
        """The settings of every connector with registered tools (defaults where none)."""
        return await self.pool.fetch(
            "SELECT t.connector, s.alias, coalesce(s.auto_approve_default, true) AS auto_approve_default,"
            " coalesce(s.cache_enabled, true) AS cache_enabled, s.refreshed_at, s.approver_default, t.tools"
            " FROM (SELECT connector, count(*) AS tools FROM tools GROUP BY connector) t"
            " LEFT JOIN connector_settings s USING (connector) ORDER BY 1"
        )

    async def set_connector_settings(self, connector: str, **fields: Any) -> None:
        bad = set(fields) - _CONNECTOR_FIELDS
        if bad:
            raise ValueError(f"not a connector setting: {sorted(bad)}")
        cols = "".join(f", {k}" for k in fields)
        vals = "".join(f", ${i}" for i in range(2, len(fields) + 2))
        upd = ", ".join(f"{k} = EXCLUDED.{k}" for k in fields) or "connector = EXCLUDED.connector"
        await self.pool.execute(
            f"INSERT INTO connector_settings (connector{cols}) VALUES ($1{vals})"
            f" ON CONFLICT (connector) DO UPDATE SET {upd}",
            connector,
            *fields.values(),
        )

    # -- profiles and grants ---------------------------------------------------------------
    async def insert_profile(self, name: str, description: str, actor: str, tool_names: str = "namespaced") -> bool:
        res = await self.pool.execute(
            "INSERT INTO profiles (name, description, created_by, tool_names) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT DO NOTHING",
            name,
            description,
            actor,
            tool_names,
        )
        return bool(res.endswith(" 1"))

    async def profiles(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(f"SELECT {_PROFILE_COLUMNS} FROM profiles ORDER BY name")

    async def profile(self, name: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"SELECT {_PROFILE_COLUMNS} FROM profiles WHERE name = $1", name)

    async def update_profile(self, name: str, **fields: Any) -> asyncpg.Record | None:
        bad = set(fields) - _PROFILE_FIELDS
        if bad:
            raise ValueError(f"not a profile setting: {sorted(bad)}")
        sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(fields, start=2))
        return await self.pool.fetchrow(
            f"UPDATE profiles SET {sets} WHERE name = $1 RETURNING {_PROFILE_COLUMNS}", name, *fields.values()
        )

    async def delete_profile(self, name: str) -> bool:
        return bool((await self.pool.execute("DELETE FROM profiles WHERE name = $1", name)).endswith(" 1"))

    async def grants(self, profile: str | None = None) -> list[asyncpg.Record]:
        if profile is None:
            return await self.pool.fetch("SELECT * FROM grants ORDER BY created_at, id")
        return await self.pool.fetch("SELECT * FROM grants WHERE profile = $1 ORDER BY created_at, id", profile)

    async def insert_grant(
        self, profile: str, tool: str, read_only: bool, reason: str, actor: str
    ) -> asyncpg.Record | None:
        """The new grant, or None when the profile does not exist."""
        try:
            return await self.pool.fetchrow(
                "INSERT INTO grants (id, profile, tool, read_only, reason, granted_by)"
                " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                uuid.uuid4(),
                profile,
                tool,
                read_only,
                reason,
                actor,
            )
        except asyncpg.ForeignKeyViolationError:
            return None

    async def delete_grant(self, profile: str, grant_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "DELETE FROM grants WHERE profile = $1 AND id = $2 RETURNING *", profile, grant_id
        )
