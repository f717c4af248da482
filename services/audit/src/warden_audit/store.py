"""SQL of the audit schema.

`Writer` owns the one connection ingest writes on (jsonb passed through as canonical text,
binary COPY); `Store` reads through the service's pool (jsonb decoded).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from warden_audit.chain import HASHED_COLUMNS

__all__ = [
    "EVENT_COLUMNS",
    "EXECUTION_COLUMNS",
    "Head",
    "Store",
    "Tx",
    "Writer",
    "partition_name",
]

EVENT_COLUMNS = (
    *HASHED_COLUMNS,  # seq … trace_id, in the order the chain hashes them
    "data",
    "prev_hash",
    "hash",
)
_EVENT_SELECT = ", ".join(c for c in EVENT_COLUMNS)
EXECUTION_COLUMNS = (
    "call_id",
    "tool",
    "connector",
    "profile",
    "user_id",
    "actor_kind",
    "actor_id",
    "trace_id",
    "state",
    "state_rank",
    "status",
    "started_at",
    "requested_at",
    "decided_at",
    "finished_at",
    "latency_ms",
    "arguments",
    "result",
    "error",
    "approver",
    "event_count",
)
# Executions travel as one jsonb array of rows (21 values each, in EXECUTION_COLUMNS order;
# a jsonb column as [value], or [] when absent, so that absent and JSON null differ):
# Postgres unpacks it faster than asyncpg encodes 21 arrays.
_EXEC_CASTS = (
    "r->>{}", "r->>{}", "r->>{}", "r->>{}", "r->>{}", "r->>{}", "r->>{}", "r->>{}", "r->>{}", "(r->>{})::int2",
    "r->>{}", "(r->>{})::timestamptz", "(r->>{})::timestamptz", "(r->>{})::timestamptz", "(r->>{})::timestamptz",
    "(r->>{})::float8", "r->{}->0", "r->{}->0", "r->{}->0", "r->>{}", "(r->>{})::int4",
)  # fmt: skip
_EXEC_UPSERT = f"""
WITH head AS (UPDATE chain_head SET seq = $2, hash = $3, ingested_at = $4)
INSERT INTO executions AS x ({", ".join(EXECUTION_COLUMNS)})
SELECT {", ".join(c.format(i) for i, c in enumerate(_EXEC_CASTS))} FROM jsonb_array_elements($1::jsonb) r
ON CONFLICT (call_id) DO UPDATE SET
    tool = COALESCE(x.tool, EXCLUDED.tool),
    connector = COALESCE(x.connector, EXCLUDED.connector),
    profile = COALESCE(x.profile, EXCLUDED.profile),
    user_id = COALESCE(x.user_id, EXCLUDED.user_id),
    actor_kind = COALESCE(x.actor_kind, EXCLUDED.actor_kind),
    actor_id = COALESCE(x.actor_id, EXCLUDED.actor_id),
    trace_id = COALESCE(x.trace_id, EXCLUDED.trace_id),
    state = CASE WHEN EXCLUDED.state_rank >= x.state_rank THEN EXCLUDED.state ELSE x.state END,
    status = CASE WHEN EXCLUDED.state_rank >= x.state_rank THEN COALESCE(EXCLUDED.status, x.status)
             ELSE x.status END,
    state_rank = GREATEST(EXCLUDED.state_rank, x.state_rank),
    started_at = LEAST(x.started_at, EXCLUDED.started_at),
    requested_at = COALESCE(x.requested_at, EXCLUDED.requested_at),
    decided_at = COALESCE(EXCLUDED.decided_at, x.decided_at),
    finished_at = COALESCE(EXCLUDED.finished_at, x.finished_at),
    latency_ms = COALESCE(EXCLUDED.latency_ms, x.latency_ms),
    arguments = COALESCE(x.arguments, EXCLUDED.arguments),
    result = COALESCE(EXCLUDED.result, x.result),
    error = COALESCE(EXCLUDED.error, x.error),
    approver = COALESCE(EXCLUDED.approver, x.approver),
    event_count = x.event_count + EXCLUDED.event_count,
    updated_at = now()
"""
_JSONB_AT = (16, 17, 18)
_LATENCY_AT = 15
_EXEC_SELECT = (
    "call_id, tool, connector, profile, user_id, actor_kind, actor_id, trace_id, state, status, started_at,"
    " requested_at, decided_at, finished_at,"
    " COALESCE(latency_ms, EXTRACT(EPOCH FROM finished_at - requested_at) * 1000) AS latency_ms,"
    " arguments, result, error, approver, event_count, updated_at"
)
# ids are claimed before the chain is locked: a replica claims while another holds the chain
_CLAIM = (
    "WITH ins AS (INSERT INTO event_ids (id) SELECT jsonb_array_elements_text($1::jsonb)"
    " ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM ins"
)
# the chain's lock is its head row: held until commit, and read after the wait (READ
# COMMITTED re-reads a row it waited for), so the head is the one the last writer committed
_LOCK_HEAD = "SELECT seq, hash, ingested_at FROM chain_head FOR UPDATE"
_SET_HEAD = "UPDATE chain_head SET seq = $1, hash = $2, ingested_at = $3"
# the rows of event_ids this transaction created (ingest uses no subtransactions)
_CLAIMED = (
    "SELECT id FROM event_ids WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))"
    " AND xmin = pg_current_xact_id()::xid"
)
MAINTENANCE_LOCK = int.from_bytes(hashlib.sha256(b"warden.audit.maintenance").digest()[:8], "big", signed=True)


def execution_rows(rows: Sequence[Sequence[Any]]) -> bytes:
    """Folded executions (EXECUTION_COLUMNS order; jsonb columns as canonical bytes or None)
    as the jsonb document `Tx.upsert_executions` takes."""
    out = []
    for r in rows:
        r = list(r)
        for i in _JSONB_AT:
            r[i] = [] if r[i] is None else [orjson.Fragment(r[i])]
        lat = r[_LATENCY_AT]
        if lat is not None and not math.isfinite(lat):
            r[_LATENCY_AT] = str(lat)  # "inf" / "nan": float8 reads them, JSON has no such number
        out.append(r)
    return orjson.dumps(out)


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
    seq: int
    hash: bytes
    ingested_at: datetime


async def _writer_init(conn: asyncpg.Connection) -> None:
    # jsonb travels as already-canonical UTF-8 bytes in jsonb's binary format (version byte 1)
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=b"\x01".__add__,
        decoder=lambda b: b[1:].decode(),
        format="binary",
    )


class Tx:
    """The statements of one ingest batch, inside one transaction on the writer connection.
    Few round trips, and little done while the chain is locked: ids are claimed and
    executions folded first; then the head is locked and read, the rows chained and copied,
    and the executions upsert moves the head."""

    def __init__(self, conn: asyncpg.Connection, known_days: set[date]) -> None:
        self.conn = conn
        self.known_days = known_days

    async def claim_ids(self, ids: Sequence[str]) -> set[str] | None:
        """Record event ids: None when every one is new (the usual case, told by the row
        count alone); else the ids this transaction inserted, i.e. those never stored before.
        An id another replica's open transaction holds waits for that one to end."""
        doc = orjson.dumps(ids)  # one jsonb array: cheaper to send than a text[]
        n = await self.conn.fetchval(_CLAIM, doc)
        if n == len(ids):
            return None
        rows = await self.conn.fetch(_CLAIMED, doc)
        return {r[0] for r in rows}

    async def lock_head(self) -> Head:
        """The end of the chain, locked until this transaction ends."""
        r = await self.conn.fetchrow(_LOCK_HEAD)
        return Head(r["seq"], bytes(r["hash"]), r["ingested_at"])

    async def copy_events(self, day: date, rows: Sequence[tuple[Any, ...]]) -> None:
        if day not in self.known_days:
            await self.conn.execute("SET LOCAL lock_timeout = '5s'")
            await ensure_partition(self.conn, day)
            self.known_days.add(day)
        await self.conn.copy_records_to_table("events", records=rows, columns=EVENT_COLUMNS)

    async def upsert_executions(self, rows: bytes, head: Head) -> None:
        """One statement for the batch (`rows`: the jsonb array `execution_rows` makes, one
        row per call); it also moves the chain head."""
        await self.conn.execute(_EXEC_UPSERT, rows, head.seq, head.hash, head.ingested_at)

    async def dead_letters(self, rows: Sequence[tuple[str, int | None, str, bytes, int]]) -> None:
        await self.conn.executemany(
            "INSERT INTO dead_letters (subject, stream_seq, reason, payload, payload_size) VALUES ($1, $2, $3, $4, $5)",
            rows,
        )

    async def set_head(self, head: Head) -> None:
        await self.conn.execute(_SET_HEAD, head.seq, head.hash, head.ingested_at)


class Writer:
    """The ingest connections (`connections` of them, so that one batch's transaction can
    claim its ids while another's holds the chain). Each reconnects on its next batch after
    a failure."""

    def __init__(self, dsn: str, schema: str, timeout_s: float, connections: int = 1) -> None:
        self.dsn = dsn
        self.schema = schema
        self.timeout_s = timeout_s
        self._conns: list[asyncpg.Connection | None] = [None] * connections
        self._free: asyncio.Queue[int] = asyncio.Queue()
        for i in range(connections):
            self._free.put_nowait(i)
        self.known_days: set[date] = set()

    async def _connection(self, i: int) -> asyncpg.Connection:
        conn = self._conns[i]
        if conn is None or conn.is_closed():
            conn = await asyncpg.connect(
                self.dsn,
                timeout=self.timeout_s,
                command_timeout=self.timeout_s,
                server_settings={"search_path": self.schema},
            )
            await _writer_init(conn)
            self._conns[i] = conn
        return conn

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[Tx]:
        """One transaction, on whichever connection is free."""
        i = await self._free.get()
        try:
            conn = await self._connection(i)
            try:
                await conn.execute("BEGIN")
                try:
                    yield Tx(conn, self.known_days)
                    await conn.execute("COMMIT")
                except BaseException:
                    # also when cancelled mid-statement: never leave this connection inside a
                    # transaction the next batch would join
                    try:
                        await conn.execute("ROLLBACK")
                    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                        self._discard(i)  # a new connection starts clean
                    raise
            except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError, TimeoutError):
                self._discard(i)
                raise
        finally:
            self._free.put_nowait(i)

    def _discard(self, i: int) -> None:
        conn, self._conns[i] = self._conns[i], None
        if conn is not None:
            conn.terminate()

    async def close(self) -> None:
        for i, conn in enumerate(self._conns):
            if conn is None:
                continue
            self._conns[i] = None
            try:
                await conn.close(timeout=2)
            except (OSError, asyncpg.InterfaceError, TimeoutError):
                conn.terminate()


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

    async def events_after_seq(self, seq: int, limit: int) -> list[asyncpg.Record]:
        """Committed events past `seq`, in chain order (the live tail)."""
        return await self.pool.fetch(
            f"SELECT {_EVENT_SELECT} FROM events WHERE seq > $1 ORDER BY seq LIMIT {int(limit)}", seq
        )

    async def head_seq(self) -> int:
        return int(await self.pool.fetchval("SELECT seq FROM chain_head"))

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
    async def head(conn: asyncpg.Connection) -> Head:
        r = await conn.fetchrow("SELECT seq, hash, ingested_at FROM chain_head")
        return Head(r["seq"], bytes(r["hash"]), r["ingested_at"])

    @staticmethod
    async def anchor(conn: asyncpg.Connection) -> tuple[int, bytes] | None:
        r = await conn.fetchrow("SELECT seq, hash FROM chain_anchor")
        return (r["seq"], bytes(r["hash"])) if r else None

    @staticmethod
    async def row_at(conn: asyncpg.Connection, seq: int) -> asyncpg.Record | None:
        return await conn.fetchrow(f"SELECT {_EVENT_SELECT} FROM events WHERE seq = $1", seq)

    @staticmethod
    async def chain_rows(
        conn: asyncpg.Connection, since: datetime | None, until: datetime | None
    ) -> AsyncIterator[asyncpg.Record]:
        where, args = [], []
        if since is not None:
            args.append(since)
            where.append(f"ingested_at >= ${len(args)}")
        if until is not None:
            args.append(until)
            where.append(f"ingested_at < ${len(args)}")
        sql = f"SELECT {_EVENT_SELECT} FROM events{_where(where)} ORDER BY seq"
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
        """Forget a whole day: its ids (in small batches), keep its last hash as the chain's
        anchor, detach it without blocking readers, drop it. Returns rows it held."""
        removed = 0
        last = -1
        while True:
            r = await self.pool.fetchrow(
                f"WITH chunk AS (SELECT id, seq FROM {name} WHERE seq > $1 ORDER BY seq LIMIT {int(batch)}),"
                " gone AS (DELETE FROM event_ids e USING chunk WHERE e.id = chunk.id RETURNING 1)"
                " SELECT max(chunk.seq) AS last, count(*) AS n FROM chunk",
                last,
            )
            if not r["n"]:
                break
            removed += r["n"]
            last = r["last"]
        async with self.pool.acquire() as conn:
            tail = await conn.fetchrow(f"SELECT seq, hash FROM {name} ORDER BY seq DESC LIMIT 1")
            if tail is not None:
                await conn.execute(
                    "INSERT INTO chain_anchor (seq, hash) VALUES ($1, $2)"
                    " ON CONFLICT (one) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash"
                    " WHERE chain_anchor.seq < EXCLUDED.seq",
                    tail["seq"],
                    tail["hash"],
                )
            await conn.execute("SET lock_timeout = '10s'")
            try:
                await conn.execute(f"ALTER TABLE events DETACH PARTITION {name} CONCURRENTLY")
                await conn.execute(f"DROP TABLE {name}")
            finally:
                await conn.execute("RESET lock_timeout")
        return removed

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
