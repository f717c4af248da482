"""SQL of the proxy schema."""

from __future__ import annotations

import uuid

import asyncpg

__all__ = ["Store"]


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert_key(
        self, *, prefix: str, key_hash: str, name: str, profile: str, created_by: str, user: str | None
    ) -> asyncpg.Record:
        return await self.pool.fetchrow(
            "INSERT INTO agent_keys (id, prefix, key_hash, name, profile, created_by, user_id)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7)"
            " RETURNING id, prefix, name, profile, created_by, user_id, created_at, revoked_at",
            uuid.uuid4(),
            prefix,
            key_hash,
            name,
            profile,
            created_by,
            user,
        )

    async def key_by_prefix(self, prefix: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT id, prefix, key_hash, name, profile, user_id, revoked_at FROM agent_keys WHERE prefix = $1", prefix
        )

    async def list_keys(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT id, prefix, name, profile, created_by, user_id, created_at, revoked_at, last_used_at"
            " FROM agent_keys ORDER BY created_at"
        )

    async def revoke_key(self, prefix: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "UPDATE agent_keys SET revoked_at = coalesce(revoked_at, now()) WHERE prefix = $1"
            " RETURNING id, prefix, name, profile, created_by, user_id, created_at, revoked_at",
            prefix,
        )
