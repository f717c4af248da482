"""Ingest's write side: `Writer` owns the connections ingest writes on (jsonb passed through
as canonical text, binary COPY), `Tx` the statements of one batch.

Locks a batch's transaction takes, always in this order, so two of them never wait on each
other in a circle: its event ids (claim, in stream order), one lane's head (a free one, or it
waits holding only ids), then its executions rows in call_id order (a batch waiting for a
call's row holds only rows of calls before it in that order)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import asyncpg
import orjson

from warden_audit.chain import Layout
from warden_audit.checkpoints import EXECUTION_SIGNED_SELECT, Checkpoints
from warden_audit.store import EVENT_COLUMNS, Head, ensure_partition, head_of, layout

__all__ = ["EXECUTION_COLUMNS", "Tx", "Writer", "execution_rows"]

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
# rows are inserted (and conflicting rows locked) in the document's order, which is call_id
# order: two batches sharing calls lock them in the same order and cannot deadlock. The same
# statement moves the lane's head (one round trip fewer while the lane is held).
# on a conflict: the stored value wins for what the first event says, the new one for what the
# call's end says (each only when it has one)
_FIRST_WINS = ("tool", "connector", "profile", "user_id", "actor_kind", "actor_id", "trace_id", "requested_at",
               "arguments", "approver")  # fmt: skip
_LAST_WINS = ("decided_at", "finished_at", "latency_ms", "result", "error")
_merge = ",\n    ".join(
    [f"{c} = COALESCE(x.{c}, EXCLUDED.{c})" for c in _FIRST_WINS]
    + [f"{c} = COALESCE(EXCLUDED.{c}, x.{c})" for c in _LAST_WINS]
)
_EXEC_UPSERT = f"""
WITH head AS (UPDATE chain_lanes SET lane_seq = $3, seq = $4, hash = $5, ingested_at = $6 WHERE lane = $2)
INSERT INTO executions AS x ({", ".join(EXECUTION_COLUMNS)})
SELECT {", ".join(c.format(i) for i, c in enumerate(_EXEC_CASTS))}
FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(r, n) ORDER BY n
ON CONFLICT (call_id) DO UPDATE SET
    {_merge},
    state = CASE WHEN EXCLUDED.state_rank >= x.state_rank THEN EXCLUDED.state ELSE x.state END,
    status = CASE WHEN EXCLUDED.state_rank >= x.state_rank THEN COALESCE(EXCLUDED.status, x.status)
             ELSE x.status END,
    state_rank = GREATEST(EXCLUDED.state_rank, x.state_rank),
    started_at = LEAST(x.started_at, EXCLUDED.started_at),
    event_count = x.event_count + EXCLUDED.event_count,
    updated_at = now()
"""
# with a chain key: the upserted rows come back and are signed in the same transaction
_EXEC_UPSERT_SIGNED = _EXEC_UPSERT + f"RETURNING {EXECUTION_SIGNED_SELECT}"
_SET_MACS = (
    "UPDATE executions AS x SET mac = u.mac FROM unnest($1::text[], $2::bytea[]) AS u(call_id, mac)"
    " WHERE x.call_id = u.call_id"
)
_JSONB_AT = (16, 17, 18)
_LATENCY_AT = 15
# ids are claimed before the chain is locked: a replica claims while another holds the chain
_CLAIM = (
    "WITH ins AS (INSERT INTO event_ids (id) SELECT jsonb_array_elements_text($1::jsonb)"
    " ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM ins"
)
# a lane's lock is its head row, held until commit: a free lane (the least advanced one, so the
# lanes grow evenly), else wait for one; a row waited for is read again after the wait (READ
# COMMITTED), so the head is the one the lane's last writer committed
_HEAD = "lane, lane_seq, seq, hash, ingested_at"
_LOCK_FREE_LANE = f"SELECT {_HEAD} FROM chain_lanes ORDER BY lane_seq, lane FOR UPDATE SKIP LOCKED LIMIT 1"
_LOCK_LANE = f"SELECT {_HEAD} FROM chain_lanes WHERE lane = $1 FOR UPDATE"
_SET_HEAD = "UPDATE chain_lanes SET lane_seq = $2, seq = $3, hash = $4, ingested_at = $5 WHERE lane = $1"
# the rows of event_ids this transaction created (ingest uses no subtransactions)
_CLAIMED = (
    "SELECT id FROM event_ids WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))"
    " AND xmin = pg_current_xact_id()::xid"
)


def execution_rows(rows: Sequence[Sequence[Any]]) -> bytes:
    """Folded executions (EXECUTION_COLUMNS order; jsonb columns as canonical bytes or None)
    as the jsonb document `Tx.upsert_executions` takes, in call_id order."""
    out = []
    for r in sorted(rows, key=_call_id):
        r = list(r)
        for i in _JSONB_AT:
            r[i] = [] if r[i] is None else [orjson.Fragment(r[i])]
        lat = r[_LATENCY_AT]
        if lat is not None and not math.isfinite(lat):
            r[_LATENCY_AT] = str(lat)  # "inf" / "nan": float8 reads them, JSON has no such number
        out.append(r)
    return orjson.dumps(out)


def _call_id(r: Sequence[Any]) -> str:
    return str(r[0])


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
    Few round trips, and little done while a lane is locked: ids are claimed and executions
    folded first; then a lane's head is locked and read, the rows chained and copied, and
    the executions upsert moves the head."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        known_days: set[date],
        layout: Layout,
        fallback: int,
        signer: Checkpoints | None = None,
    ) -> None:
        self.conn = conn
        self.signer = signer
        self.known_days = known_days
        self.layout = layout
        self.fallback = fallback  # the lane to wait for when every lane is taken

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

    async def lock_lane(self) -> Head:
        """The end of a lane no other transaction holds (else of `fallback`, once its holder
        commits), locked until this transaction ends."""
        r = await self.conn.fetchrow(_LOCK_FREE_LANE)
        if r is None:
            r = await self.conn.fetchrow(_LOCK_LANE, self.fallback)
        return head_of(r)

    async def copy_events(self, day: date, rows: Sequence[Sequence[Any]]) -> None:
        if day not in self.known_days:
            await self.conn.execute("SET LOCAL lock_timeout = '5s'")
            await ensure_partition(self.conn, day)
            self.known_days.add(day)
        await self.conn.copy_records_to_table("events", records=rows, columns=EVENT_COLUMNS)

    async def upsert_executions(self, rows: bytes, head: Head) -> None:
        """One statement for the batch (`rows`: the jsonb array `execution_rows` makes, one
        row per call, in call_id order); it also moves the lane's head. With a signer, each
        row as it now stands is signed (one more statement, same transaction)."""
        args = (rows, head.lane, head.lane_seq, head.seq, head.hash, head.ingested_at)
        if self.signer is None:
            await self.conn.execute(_EXEC_UPSERT, *args)
            return
        stored = await self.conn.fetch(_EXEC_UPSERT_SIGNED, *args)
        sign = self.signer.sign_execution
        await self.conn.execute(_SET_MACS, [r["call_id"] for r in stored], [sign(r) for r in stored])

    async def dead_letters(self, rows: Sequence[tuple[str, int | None, str, bytes, int]]) -> None:
        await self.conn.executemany(
            "INSERT INTO dead_letters (subject, stream_seq, reason, payload, payload_size) VALUES ($1, $2, $3, $4, $5)",
            rows,
        )

    async def set_head(self, head: Head) -> None:
        await self.conn.execute(_SET_HEAD, head.lane, head.lane_seq, head.seq, head.hash, head.ingested_at)


class Writer:
    """The ingest connections (`connections` of them, so that one batch's transaction can
    claim its ids while another's holds the chain). Each reconnects on its next batch after
    a failure."""

    def __init__(
        self, dsn: str, schema: str, timeout_s: float, connections: int = 1, signer: Checkpoints | None = None
    ) -> None:
        self.dsn = dsn
        self.signer = signer  # signs each executions row it upserts (the chain key)
        self.schema = schema
        self.timeout_s = timeout_s
        self._conns: list[asyncpg.Connection | None] = [None] * connections
        self._free: asyncio.Queue[int] = asyncio.Queue()
        for i in range(connections):
            self._free.put_nowait(i)
        self.known_days: set[date] = set()
        self.layout: Layout | None = None  # read from the schema on the first connection
        self._turn = 0

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
            if self.layout is None:
                self.layout = await layout(conn)
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
                    assert self.layout is not None
                    self._turn += 1
                    yield Tx(conn, self.known_days, self.layout, self._turn % self.layout.lanes, self.signer)
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
