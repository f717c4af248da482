"""SQL of the audit schema, read side: `Store` reads and maintains through the service's
pool (jsonb decoded). Ingest writes through `writer.Writer`."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from warden_audit.chain import HASHED_COLUMNS, Layout
from warden_audit.checkpoints import EXECUTION_SIGNED_SELECT

__all__ = [
    "EVENT_COLUMNS",
    "Head",
    "Store",
    "ensure_partition",
    "head_of",
    "layout",
    "partition_name",
]

EVENT_COLUMNS = (
    *HASHED_COLUMNS,  # seq … trace_id, in the order the chain hashes them
    "data",
    "prev_hash",
    "hash",
    "lane",
)
_EVENT_SELECT = ", ".join(c for c in EVENT_COLUMNS)
_EXEC_SELECT = (
    "call_id, tool, connector, profile, user_id, actor_kind, actor_id, trace_id, state, status, started_at,"
    " requested_at, decided_at, finished_at,"
    " COALESCE(latency_ms, EXTRACT(EPOCH FROM finished_at - requested_at) * 1000) AS latency_ms,"
    " arguments, result, error, approver, event_count, updated_at"
)
MAINTENANCE_LOCK = int.from_bytes(hashlib.sha256(b"warden.audit.maintenance").digest()[:8], "big", signed=True)


def partition_name(day: date) -> str:
    return f"events_p{day:%Y%m%d}"


def _partition_sql(day: date) -> str:
    lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
    hi = lo + timedelta(days=1)
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF events"
        f" FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
    )


async def ensure_partition(conn: asyncpg.Connection, day: date) -> None:
    try:
        await conn.execute(_partition_sql(day))
    except (asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
        pass  # another replica created it at the same moment


@dataclass(frozen=True, slots=True)
class Head:
    """The end of one lane: the place (`lane_seq`), seq and hash of its last row."""

    lane: int
    lane_seq: int
    seq: int
    hash: bytes
    ingested_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"lane": self.lane, "lane_seq": self.lane_seq, "seq": self.seq, "hash": self.hash.hex(),
                "ingested_at": self.ingested_at.isoformat()}  # fmt: skip


_HEAD_COLUMNS = "lane, lane_seq, seq, hash, ingested_at"


def head_of(r: Any) -> Head:
    return Head(r["lane"], r["lane_seq"], r["seq"], bytes(r["hash"]), r["ingested_at"])


async def layout(conn: asyncpg.Connection | asyncpg.Pool) -> Layout:
    r = await conn.fetchrow("SELECT lanes, base FROM chain_layout")
    return Layout(r["lanes"], r["base"])


class Store:
    """Reads and maintenance, through the service's pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # -- events --------------------------------------------------------------------------
    async def events_page(
        self, where: list[str], args: list[Any], limit: int, before: tuple[datetime, str] | None
    ) -> list[asyncpg.Record]:
        if before is not None:
            args = [*args, before[0], before[1]]
            where = [*where, f"(time, id) < (${len(args) - 1}, ${len(args)})"]
        sql = f"SELECT {_EVENT_SELECT} FROM events{_where(where)} ORDER BY time DESC, id DESC LIMIT {int(limit)}"
        return await self.pool.fetch(sql, *args)

    async def events_after(
        self, where: list[str], args: list[Any], limit: int, after: tuple[datetime, str] | None
    ) -> list[asyncpg.Record]:
        """Oldest first (the tail's catch-up)."""
        if after is not None:
            args = [*args, after[0], after[1]]
            where = [*where, f"(time, id) > (${len(args) - 1}, ${len(args)})"]
        sql = f"SELECT {_EVENT_SELECT} FROM events{_where(where)} ORDER BY time, id LIMIT {int(limit)}"
        return await self.pool.fetch(sql, *args)

    async def stream_events(self, where: list[str], args: list[Any]) -> AsyncIterator[asyncpg.Record]:
        """Every matching event, oldest first, through a server-side cursor."""
        sql = f"SELECT {_EVENT_SELECT} FROM events{_where(where)} ORDER BY time, id"
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            async for r in conn.cursor(sql, *args, prefetch=1000):
                yield r

    async def events_after_seq(self, after: dict[int, int], limit: int) -> list[asyncpg.Record]:
        """Committed events past each lane's cursor (`after`: lane -> seq), in each lane's
        order, at most `limit` per lane (the live tail). One statement, so one snapshot: what
        it sees of a lane is a prefix of it (a lane's batches commit one after another)."""
        lanes = list(after)
        return await self.pool.fetch(
            "SELECT e.* FROM unnest($1::int2[], $2::int8[]) AS c(lane, after)"
            f" CROSS JOIN LATERAL (SELECT {_EVENT_SELECT} FROM events e WHERE e.lane = c.lane AND e.seq > c.after"
            f" ORDER BY e.seq LIMIT {int(limit)}) e ORDER BY e.ingested_at, e.seq",
            lanes,
            [after[k] for k in lanes],
        )

    async def head_seq(self) -> dict[int, int]:
        """Each lane's last seq (where a tail starts)."""
        return {r["lane"]: r["seq"] for r in await self.pool.fetch("SELECT lane, seq FROM chain_lanes")}

    async def events_of_call(self, call_id: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            f"SELECT {_EVENT_SELECT} FROM events WHERE call_id = $1 ORDER BY time, seq LIMIT 1000", call_id
        )

    # -- executions ----------------------------------------------------------------------
    async def executions_page(
        self, where: list[str], args: list[Any], limit: int, before: tuple[datetime, str] | None
    ) -> list[asyncpg.Record]:
        if before is not None:
            args = [*args, before[0], before[1]]
            where = [*where, f"(started_at, call_id) < (${len(args) - 1}, ${len(args)})"]
        sql = (
            f"SELECT {_EXEC_SELECT} FROM executions{_where(where)}"
            f" ORDER BY started_at DESC, call_id DESC LIMIT {int(limit)}"
        )
        return await self.pool.fetch(sql, *args)

    async def execution(self, call_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"SELECT {_EXEC_SELECT} FROM executions WHERE call_id = $1", call_id)

    # -- chain ---------------------------------------------------------------------------
    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[asyncpg.Connection]:
        """A consistent read-only view (verify reads the chain and its head in one)."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            yield conn

    @staticmethod
    async def layout(conn: asyncpg.Connection) -> Layout:
        return await layout(conn)

    @staticmethod
    async def heads(conn: asyncpg.Connection) -> list[Head]:
        return [head_of(r) for r in await conn.fetch(f"SELECT {_HEAD_COLUMNS} FROM chain_lanes ORDER BY lane")]

    @staticmethod
    async def anchors(conn: asyncpg.Connection) -> dict[int, tuple[int, bytes]]:
        """lane -> (seq, hash) of the last row retention removed from it."""
        rows = await conn.fetch("SELECT lane, seq, hash FROM chain_anchor")
        return {r["lane"]: (r["seq"], bytes(r["hash"])) for r in rows}

    @staticmethod
    async def row_at(conn: asyncpg.Connection, lane: int, seq: int) -> asyncpg.Record | None:
        return await conn.fetchrow(f"SELECT {_EVENT_SELECT} FROM events WHERE lane = $1 AND seq = $2", lane, seq)

    @staticmethod
    async def chain_rows(
        conn: asyncpg.Connection, lane: int, since: datetime | None, until: datetime | None
    ) -> AsyncIterator[asyncpg.Record]:
        """One lane's rows ingested in [since, until), in its order."""
        where: list[str] = ["lane = $1"]
        args: list[Any] = [lane]
        if since is not None:
            args.append(since)
            where.append(f"ingested_at >= ${len(args)}")
        if until is not None:
            args.append(until)
            where.append(f"ingested_at < ${len(args)}")
        sql = f"SELECT {_EVENT_SELECT} FROM events{_where(where)} ORDER BY lane, seq"
        async for r in conn.cursor(sql, *args, prefetch=2000):
            yield r

    # -- maintenance ---------------------------------------------------------------------
    @asynccontextmanager
    async def maintenance_lock(self) -> AsyncIterator[bool]:
        """One replica at a time runs maintenance; the others skip the round."""
        async with self.pool.acquire() as conn:
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", MAINTENANCE_LOCK)
            try:
                yield bool(got)
            finally:
                if got:
                    await conn.execute("SELECT pg_advisory_unlock($1)", MAINTENANCE_LOCK)

    async def ensure_partitions(self, days: Sequence[date]) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute("SET lock_timeout = '5s'")
            try:
                for day in days:
                    await ensure_partition(conn, day)
            finally:
                await conn.execute("RESET lock_timeout")

    async def partitions(self) -> list[tuple[str, date]]:
        rows = await self.pool.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace"
            " WHERE p.relname = 'events' AND n.nspname = current_schema()"
        )
        out = []
        for r in rows:
            name = r["relname"]
            if name.startswith("events_p") and len(name) == 16:
                out.append((name, datetime.strptime(name[8:], "%Y%m%d").date()))
        return sorted(out, key=lambda x: x[1])

    async def drop_partition(self, name: str, batch: int) -> int:
        """Forget a whole day: its ids (in small batches), keep each lane's last hash in it as
        that lane's anchor, detach it without blocking readers, drop it. Returns rows it held."""
        removed = 0
        last = (-1, -1)
        while True:
            r = await self.pool.fetchrow(
                f"WITH chunk AS (SELECT id, lane, seq FROM {name} WHERE (lane, seq) > ($1, $2)"
                f" ORDER BY lane, seq LIMIT {int(batch)}),"
                " gone AS (DELETE FROM event_ids e USING chunk WHERE e.id = chunk.id RETURNING 1)"
                " SELECT (SELECT ARRAY[lane, seq] FROM chunk ORDER BY lane DESC, seq DESC LIMIT 1) AS last,"
                " (SELECT count(*) FROM chunk) AS n",
                *last,
            )
            if not r["n"]:
                break
            removed += r["n"]
            last = (r["last"][0], r["last"][1])
        async with self.pool.acquire() as conn:
            # each lane's rows leave a day in order (a lane's ingest times never go back), so
            # its last row here is the one the lane's first remaining row links to
            await conn.execute(
                f"INSERT INTO chain_anchor (lane, seq, hash)"
                f" SELECT DISTINCT ON (lane) lane, seq, hash FROM {name} ORDER BY lane, seq DESC"
                " ON CONFLICT (lane) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash"
                " WHERE chain_anchor.seq < EXCLUDED.seq"
            )
            await conn.execute("SET lock_timeout = '10s'")
            try:
                await conn.execute(f"ALTER TABLE events DETACH PARTITION {name} CONCURRENTLY")
                await conn.execute(f"DROP TABLE {name}")
            finally:
                await conn.execute("RESET lock_timeout")
        return removed

    @staticmethod
    async def signed_executions(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Record]:
        """Every executions row with what its signature covers and the signature (call_id order)."""
        sql = f"SELECT {EXECUTION_SIGNED_SELECT}, mac FROM executions ORDER BY call_id"
        async for r in conn.cursor(sql, prefetch=2000):
            yield r

    async def sign_unsigned_executions(self, sign: Callable[[Any], bytes]) -> int:
        """Sign the rows that have no signature (written before the chain key was set)."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT {EXECUTION_SIGNED_SELECT} FROM executions WHERE mac IS NULL ORDER BY call_id FOR UPDATE"
            )
            if rows:
                await conn.execute(
                    "UPDATE executions AS x SET mac = u.mac FROM unnest($1::text[], $2::bytea[]) AS u(call_id, mac)"
                    " WHERE x.call_id = u.call_id",
                    [r["call_id"] for r in rows],
                    [sign(r) for r in rows],
                )
        return len(rows)

    async def delete_old_executions(self, before: datetime, batch: int) -> int:
        total = 0
        while True:
            n = await self.pool.fetchval(
                "WITH gone AS (DELETE FROM executions WHERE call_id IN"
                f" (SELECT call_id FROM executions WHERE updated_at < $1 LIMIT {int(batch)}) RETURNING 1)"
                " SELECT count(*) FROM gone",
                before,
            )
            total += n
            if n < batch:
                return total

    async def delete_old_dead_letters(self, before: datetime, batch: int) -> int:
        total = 0
        while True:
            n = await self.pool.fetchval(
                "WITH gone AS (DELETE FROM dead_letters WHERE id IN"
                f" (SELECT id FROM dead_letters WHERE received_at < $1 LIMIT {int(batch)}) RETURNING 1)"
                " SELECT count(*) FROM gone",
                before,
            )
            total += n
            if n < batch:
                return total

    async def dead_letters(self, limit: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT id, subject, stream_seq, reason, payload, payload_size, received_at FROM dead_letters"
            f" ORDER BY id DESC LIMIT {int(limit)}"
        )


def _where(where: list[str]) -> str:
    return " WHERE " + " AND ".join(where) if where else ""
