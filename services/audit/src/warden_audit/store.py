"""SQL of the audit schema."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg
from warden_common.contracts import Event

__all__ = ["Store", "event_row"]

_COLS = (
    "id",
    "type",
    "time",
    "source",
    "actor_kind",
    "actor_id",
    "connector",
    "tool",
    "profile",
    "call_id",
    "user_id",
    "status",
    "latency_ms",
    "trace_id",
    "data",
)


def event_row(e: Event) -> tuple[Any, ...]:
    r = e.refs
    return (
        e.id,
        e.type,
        e.time,
        str(e.source),
        e.actor.kind if e.actor else None,
        e.actor.id if e.actor else None,
        r.connector,
        r.tool,
        r.profile,
        r.call_id,
        r.user,
        e.status,
        e.latency_ms,
        e.trace_id,
        json.dumps(e.data),
    )


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert_batch(self, rows: list[tuple[Any, ...]]) -> int:
        """Insert events, skipping ids already stored. Returns how many were new."""
        async with self.pool.acquire() as conn, conn.transaction():
            # COPY into a staging table (data as text: binary COPY has no jsonb encoder here),
            # then one INSERT … ON CONFLICT DO NOTHING makes redeliveries harmless
            await conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS incoming (id text, type text, time timestamptz, source text,"
                " actor_kind text, actor_id text, connector text, tool text, profile text, call_id text,"
                " user_id text, status text, latency_ms double precision, trace_id text, data text)"
                " ON COMMIT DELETE ROWS"
            )
            await conn.copy_records_to_table("incoming", records=rows, columns=list(_COLS))
            cols = ", ".join(_COLS)
            res = await conn.execute(
                f"INSERT INTO events ({cols}) SELECT {cols.replace('data', 'data::jsonb')} FROM incoming"
                " ON CONFLICT (id) DO NOTHING"
            )
        return int(res.rsplit(" ", 1)[-1])

    async def dead_letter(self, subject: str, reason: str, payload: bytes) -> None:
        await self.pool.execute(
            "INSERT INTO dead_letters (subject, reason, payload) VALUES ($1, $2, $3)", subject, reason, payload
        )

    async def query(
        self, where: list[str], args: list[Any], limit: int, before: tuple[datetime, str] | None
    ) -> list[asyncpg.Record]:
        if before is not None:
            args = [*args, before[0], before[1]]
            where = [*where, f"(time, id) < (${len(args) - 1}, ${len(args)})"]
        sql = (
            "SELECT id, type, time, source, actor_kind, actor_id, connector, tool, profile, call_id, user_id, status,"
            " latency_ms, trace_id, data FROM events"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY time DESC, id DESC LIMIT {int(limit)}"
        )
        return await self.pool.fetch(sql, *args)
