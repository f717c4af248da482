"""SQL of the connectors schema. Sealed columns go in and out as bytes; nothing here opens them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

__all__ = ["ConnectorRow", "Store"]

ConnectorRow = asyncpg.Record

_COLUMNS = (
    "id, name, url, transport, description, scope, auth_type, auth_config, secret_sealed, secret_expires_at,"
    " status, status_reason, config_version, timeout_s, created_at, updated_at, last_used_at"
)


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert(
        self,
        *,
        name: str,
        url: str,
        transport: str,
        description: str,
        scope: str,
        auth_type: str,
        auth_config: dict[str, Any],
        secret_sealed_for: Any,
        secret_expires_at: datetime | None,
        status: str,
        timeout_s: float,
    ) -> ConnectorRow:
        """Insert a connector; `secret_sealed_for(id)` seals the secret bound to the new id."""
        cid = uuid.uuid4()
        sealed = secret_sealed_for(cid)
        row = await self.pool.fetchrow(
            f"INSERT INTO connectors (id, name, url, transport, description, scope, auth_type, auth_config,"
            f" secret_sealed, secret_expires_at, status, timeout_s)"
            f" VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)"
            f" ON CONFLICT (name) DO NOTHING RETURNING {_COLUMNS}",
            cid,
            name,
            url,
            transport,
            description,
            scope,
            auth_type,
            auth_config,
            sealed,
            secret_expires_at,
            status,
            timeout_s,
        )
        return row

    async def get(self, name: str) -> ConnectorRow | None:
        return await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM connectors WHERE name = $1", name)

    async def list(self, statuses: list[str] | None = None) -> list[ConnectorRow]:
        if statuses:
            return await self.pool.fetch(
                f"SELECT {_COLUMNS} FROM connectors WHERE status = ANY($1::text[]) ORDER BY name", statuses
            )
        return await self.pool.fetch(f"SELECT {_COLUMNS} FROM connectors ORDER BY name")

    async def update(self, name: str, fields: dict[str, Any], bump_version: bool) -> ConnectorRow | None:
        if not fields and not bump_version:
            return await self.get(name)
        sets, args = [], []
        for i, (k, v) in enumerate(fields.items(), start=2):
            sets.append(f"{k} = ${i}")
            args.append(v)
        sets.append("updated_at = now()")
        if bump_version:
            sets.append("config_version = config_version + 1")
        return await self.pool.fetchrow(
            f"UPDATE connectors SET {', '.join(sets)} WHERE name = $1 RETURNING {_COLUMNS}", name, *args
        )

    async def set_status(self, cid: uuid.UUID, status: str, reason: str | None) -> None:
        await self.pool.execute(
            "UPDATE connectors SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1",
            cid,
            status,
            reason,
        )

    async def touch(self, cid: uuid.UUID) -> None:
        await self.pool.execute("UPDATE connectors SET last_used_at = now() WHERE id = $1", cid)

    async def delete(self, name: str) -> bool:
        res = await self.pool.execute("DELETE FROM connectors WHERE name = $1", name)
        return res.endswith(" 1")

    # -- tokens --------------------------------------------------------------------
    async def get_token(self, cid: uuid.UUID, user_key: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT sealed, expires_at, scopes, version, status FROM tokens WHERE connector_id = $1 AND user_key = $2",
            cid,
            user_key,
        )

    async def purge_tokens(self, cid: uuid.UUID, user_key: str | None = None) -> list[asyncpg.Record]:
        if user_key is None:
            return await self.pool.fetch("DELETE FROM tokens WHERE connector_id = $1 RETURNING user_key, sealed", cid)
        return await self.pool.fetch(
            "DELETE FROM tokens WHERE connector_id = $1 AND user_key = $2 RETURNING user_key, sealed", cid, user_key
        )
