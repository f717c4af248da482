"""Lanes: batches extend independent hash chains at the same time; verify checks every lane,
the tail follows every lane, and a database with the single chain of 0001 converts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from audit_support import Audit, event, fresh_database, publisher, run_audit, wait_for
from warden_audit.chain import ZERO, record_hash
from warden_audit.parse import Batch, Parser
from warden_audit.redaction import Redactor
from warden_audit.service import link_rows
from warden_audit.store import ensure_partition
from warden_audit.writer import Tx, Writer, execution_rows
from warden_common.contracts import EventRefs


@pytest.fixture
async def own() -> AsyncIterator[Audit]:
    async with run_audit() as a:
        yield a


def _batch(tool: str, n: int) -> Batch:
    evs = [event("call.completed", refs=EventRefs(tool=tool), data={"i": i}) for i in range(n)]
    msgs = [SimpleNamespace(data=e.model_dump_json().encode(), subject="x.v1.events.call.completed") for e in evs]
    return Parser(Redactor([]), 4096).parse(msgs)


async def _extend(tx: Tx, batch: Batch) -> int:
    """What ingest does once it holds a lane: number, hash, copy, move the head."""
    head = await tx.lock_lane()
    ingested = max(datetime.now(UTC), head.ingested_at)
    new = link_rows(batch.rows, head, ingested, tx.layout)
    await tx.copy_events(ingested.date(), batch.rows)
    await tx.set_head(new)
    return head.lane


async def _verify(a: Audit) -> dict[str, Any]:
    async with a.client() as c:
        r = await c.post("/v1/verify")
    assert r.status_code == 200, r.text
    return r.json()


async def test_two_writers_extend_different_lanes_at_the_same_time(own: Audit) -> None:
    # two writers as two replicas would have them: each its own connection
    w1, w2 = Writer(own.dsn, "audit", 10), Writer(own.dsn, "audit", 10)
    b1, b2 = _batch("lanes__a", 30), _batch("lanes__b", 20)
    try:
        async with w1.batch() as t1:
            lane1 = await _extend(t1, b1)
            # t1 holds its lane until it commits; t2 takes another one without waiting
            async with asyncio.timeout(5), w2.batch() as t2:
                lane2 = await _extend(t2, b2)
            assert lane2 != lane1
            # t2 has committed while t1 still holds its lane
            assert (await own.sql("SELECT count(*) FROM events WHERE tool = 'lanes__b'"))[0][0] == 20
            assert (await own.sql("SELECT count(*) FROM events WHERE tool = 'lanes__a'"))[0][0] == 0
    finally:
        await w1.close()
        await w2.close()
    rows = await own.sql("SELECT tool, lane, seq FROM events ORDER BY seq")
    assert {r["lane"] for r in rows if r["tool"] == "lanes__a"} == {lane1}
    assert {r["lane"] for r in rows if r["tool"] == "lanes__b"} == {lane2}
    assert len({r["seq"] for r in rows}) == 50 and all(r["seq"] % 4 == r["lane"] for r in rows)
    rep = await _verify(own)
    assert rep["ok"] and rep["checked"] == 50, rep
    by_lane = {ln["lane"]: ln for ln in rep["lanes"]}
    assert by_lane[lane1]["checked"] == 30 and by_lane[lane2]["checked"] == 20
    assert by_lane[lane1]["head"]["lane_seq"] == 30 and by_lane[lane2]["head"]["lane_seq"] == 20


def _execution(call_id: str) -> tuple[Any, ...]:
    t = datetime.now(UTC)
    return (call_id, "lanes__x", None, None, None, None, None, None, "requested", 1, None, t,
            t, None, None, None, None, None, None, None, 1)  # fmt: skip


async def test_executions_are_upserted_in_call_id_order_so_batches_sharing_calls_do_not_deadlock(
    own: Audit, tag: str
) -> None:
    """Batch 2 comes with its calls in the other order: it waits for batch 1 at the first call
    (holding none), and batch 1 goes on. In arrival order it would hold c2 while waiting for
    c1, and batch 1 asking for c2 would deadlock."""
    c1, c2 = f"{tag}-c1", f"{tag}-c2"
    assert execution_rows([_execution(c2), _execution(c1)]).index(c1.encode()) < execution_rows(
        [_execution(c2), _execution(c1)]
    ).index(c2.encode())
    w1, w2 = Writer(own.dsn, "audit", 10), Writer(own.dsn, "audit", 10)
    try:
        async with contextlib.AsyncExitStack() as later:
            t2 = await later.enter_async_context(w2.batch())  # commits after t1
            h2 = await t2.lock_lane()
            async with w1.batch() as t1:
                h1 = await t1.lock_lane()
                await t1.upsert_executions(execution_rows([_execution(c1)]), h1)
                second = asyncio.create_task(t2.upsert_executions(execution_rows([_execution(c2), _execution(c1)]), h2))

                async def waiting() -> bool:
                    rows = await own.sql(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'"
                    )
                    return rows[0][0] > 0

                await wait_for(waiting, timeout=10, what="batch 2 waiting for batch 1's call")
                async with asyncio.timeout(5):  # past deadlock_timeout (1 s): Postgres would have aborted one
                    await t1.upsert_executions(execution_rows([_execution(c2)]), h1)
                assert not second.done()
            async with asyncio.timeout(10):  # t1 committed: t2 goes on
                await second
    finally:
        await w1.close()
        await w2.close()
    rows = await own.sql("SELECT call_id, event_count FROM executions WHERE call_id = ANY($1::text[])", [c1, c2])
    assert {r["call_id"]: r["event_count"] for r in rows} == {c1: 2, c2: 2}


async def _fill_lanes(a: Audit, per_lane: int) -> None:
    """Four batches one after another: each takes the least advanced free lane, so each
    lane gets one."""
    w = Writer(a.dsn, "audit", 10)
    try:
        for k in range(4):
            async with w.batch() as tx:
                await _extend(tx, _batch(f"lanes__{k}", per_lane))
    finally:
        await w.close()


async def _lanes(a: Audit) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for r in await a.sql("SELECT lane, seq FROM events ORDER BY lane, seq"):
        out.setdefault(r["lane"], []).append(r["seq"])
    return out


async def test_verify_reports_a_changed_row_and_a_gap_in_a_lane_other_than_0(own: Audit) -> None:
    await _fill_lanes(own, 6)
    lanes = await _lanes(own)
    assert {k: len(v) for k, v in lanes.items()} == {0: 6, 1: 6, 2: 6, 3: 6}, lanes
    lane = 2
    seqs = lanes[lane]
    assert seqs == [2 + 4 * n for n in range(1, 7)]  # place n of lane L: seq 4n + L
    assert (await _verify(own))["ok"]

    changed = seqs[len(seqs) // 2]
    (original,) = await own.sql("SELECT data::text FROM events WHERE seq = $1", changed)
    await own.sql("UPDATE events SET data = jsonb_set(data, '{i}', '999') WHERE seq = $1", changed)
    rep = await _verify(own)
    assert not rep["ok"]
    b = rep["first_break"]
    assert b["lane"] == lane and b["seq"] == changed and "changed" in b["reason"], rep
    by_lane = {ln["lane"]: ln for ln in rep["lanes"]}
    assert by_lane[lane]["checked"] == len(seqs) // 2
    assert all(ln["first_break"] is None for ln in rep["lanes"] if ln["lane"] != lane)

    # put it back (the lane verifies again), then remove its second row: a gap in that lane
    await own.sql("UPDATE events SET data = $2::jsonb WHERE seq = $1", changed, original[0])
    assert (await _verify(own))["ok"]
    await own.sql("DELETE FROM events WHERE seq = $1", seqs[1])
    rep = await _verify(own)
    b = rep["first_break"]
    assert b["lane"] == lane and b["seq"] == seqs[1] and "missing" in b["reason"], rep


async def test_verify_reports_the_missing_end_of_a_lane(own: Audit) -> None:
    await _fill_lanes(own, 5)
    lane = 3
    seqs = (await _lanes(own))[lane]
    await own.sql("DELETE FROM events WHERE seq = ANY($1::int8[])", seqs[-2:])
    rep = await _verify(own)
    b = rep["first_break"]
    assert b["lane"] == lane and b["seq"] == seqs[-2] and "up to its head" in b["reason"], rep


async def test_tail_sees_every_event_once_while_two_lanes_commit_out_of_order(own: Audit) -> None:
    w1, w2 = Writer(own.dsn, "audit", 10), Writer(own.dsn, "audit", 10)
    first, second = _batch("tailanes__a", 25), _batch("tailanes__b", 25)
    want = {r[2] for r in first.rows} | {r[2] for r in second.rows}
    got: list[str] = []
    try:
        async with own.client() as c, c.stream("GET", "/v1/tail", params={"tool": "tailanes__*"}) as r:
            lines = r.aiter_lines()
            async with asyncio.timeout(10):
                while (await anext(lines)) != ": live":
                    pass

            async def take(n: int) -> None:
                async with asyncio.timeout(15):
                    while n:
                        line = await anext(lines)
                        if line.startswith("data:"):
                            got.append(json.loads(line[5:])["id"])
                            n -= 1

            async with w1.batch() as t1:
                lane1 = await _extend(t1, first)  # numbered first: the lower places
                async with w2.batch() as t2:
                    lane2 = await _extend(t2, second)
                # the second lane's rows are committed and shown while the first's are not
                await take(25)
                assert set(got) == {r[2] for r in second.rows}
            await take(25)
            # nothing more comes (no repeat): a marker event is the next one
            async with publisher(own.root) as bus:
                marker = event("x.marker", refs=EventRefs(tool="tailanes__z"))
                await bus.publish_event_now(marker)
            await take(1)
    finally:
        await w1.close()
        await w2.close()
    assert lane1 != lane2
    seqs = {r[2]: r[0] for r in (*first.rows, *second.rows)}
    assert max(seqs[i] for i in got[:25]) > min(seqs[r[2]] for r in first.rows)  # committed out of seq order
    assert got[-1] == marker.id
    assert len(got[:-1]) == 50 and set(got[:-1]) == want


async def test_a_single_chain_database_converts_to_lanes_and_still_verifies() -> None:
    async with fresh_database() as dsn:
        await _single_chain_database(dsn, dropped=3, rows=12)
        async with run_audit(dsn=dsn) as a:
            rep = await _verify(a)
            assert rep["ok"] and rep["checked"] == 9, rep
            by_lane = {ln["lane"]: ln for ln in rep["lanes"]}
            assert sorted(by_lane) == [0, 1, 2, 3]
            assert by_lane[0]["checked"] == 9 and by_lane[0]["first_seq"] == 4 and by_lane[0]["last_seq"] == 12
            # ingest goes on in all lanes; lane 0 links to the last row of the single chain
            await _fill_more(a, 40, total=49)
            rep = await _verify(a)
            assert rep["ok"] and rep["checked"] == 49, rep
            lane0 = await a.sql("SELECT seq, prev_hash FROM events WHERE lane = 0 AND seq > 12 ORDER BY seq LIMIT 1")
            old = await a.sql("SELECT hash FROM events WHERE seq = 12")
            assert lane0[0]["seq"] == 13 * 4 and lane0[0]["prev_hash"] == old[0]["hash"]
            assert all(r["seq"] > 12 for r in await a.sql("SELECT seq FROM events WHERE lane > 0"))
            # a replica still on the single-chain code cannot lock a head: it retries, stores nothing
            with pytest.raises(asyncpg.UndefinedTableError):
                await a.sql("SELECT seq, hash, ingested_at FROM chain_head FOR UPDATE")
            # an old row changed is still found
            await a.sql("UPDATE events SET status = 'x' WHERE seq = 7")
            b = (await _verify(a))["first_break"]
            assert b["lane"] == 0 and b["seq"] == 7 and "changed" in b["reason"]


async def _fill_more(a: Audit, n: int, total: int) -> None:
    async with publisher(a.root) as bus:
        for i in range(n):
            await bus.publish_event_now(event("call.completed", refs=EventRefs(tool="lanes__m"), data={"i": i}))

    async def stored() -> bool:
        return (await a.sql("SELECT count(*) FROM events"))[0][0] >= total

    await wait_for(stored, what=f"{total} events stored")


async def _single_chain_database(dsn: str, *, dropped: int, rows: int) -> None:
    """The schema as 0001 left it, with a chain of `rows` rows whose first `dropped` were
    removed by retention (so it has an anchor), made the way the single-chain ingest did."""
    sql = (resources.files("warden_audit.migrations") / "0001_init.sql").read_text()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE SCHEMA audit; SET search_path TO audit")
        await conn.execute(
            "CREATE TABLE _migrations (version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute(sql)
        await conn.execute(
            "INSERT INTO _migrations (version, name, checksum) VALUES (1, 'init', $1)",
            hashlib.sha256(sql.encode()).hexdigest(),
        )
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        await ensure_partition(conn, t0.date())
        prev = ZERO
        for seq in range(1, rows + 1):
            r: dict[str, Any] = {
                "seq": seq, "ingested_at": t0, "id": f"legacy-event-{seq:04d}", "type": "call.completed",
                "time": t0 - timedelta(seconds=1), "source": "proxy", "actor_kind": "agent", "actor_id": "a1",
                "connector": "notion", "tool": "legacy__t", "profile": None, "call_id": None, "user_id": None,
                "status": "ok", "latency_ms": 1.5, "trace_id": None, "data": {"i": seq, "s": "x"},
            }  # fmt: skip
            h = record_hash(prev, r)
            if seq > dropped:
                await conn.execute(
                    "INSERT INTO events (seq, ingested_at, id, type, time, source, actor_kind, actor_id, connector,"
                    " tool, profile, call_id, user_id, status, latency_ms, trace_id, data, prev_hash, hash)"
                    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17::jsonb,$18,$19)",
                    *(r[k] for k in list(r)[:16]),
                    json.dumps(r["data"]),
                    prev,
                    h,
                )
                await conn.execute("INSERT INTO event_ids (id) VALUES ($1)", r["id"])
            elif seq == dropped:
                await conn.execute("INSERT INTO chain_anchor (seq, hash) VALUES ($1, $2)", seq, h)
            prev = h
        await conn.execute("UPDATE chain_head SET seq = $1, hash = $2, ingested_at = $3", rows, prev, t0)
    finally:
        await conn.close()
