"""Tamper evidence that does not trust the database (issue 16 item 11d): lane heads signed
with a key the database never holds, into a file outside it. An attacker who can write the
database but has no key edits a row and re-chains its lane with SQL: the unkeyed chain holds,
the signed checkpoint does not, and `verify` (and `warden audit verify`) says so."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from audit_support import Audit, event, fresh_database, publisher, run_audit, unique_root, wait_for
from pydantic import SecretStr
from typer.testing import CliRunner
from warden_audit.chain import record_hash
from warden_audit.cli import app as cli_app
from warden_audit.store import _EVENT_SELECT
from warden_common.contracts import EventRefs

KEY = "chain-key-" + "k" * 32


@pytest.fixture
async def signed(tmp_path: Path) -> AsyncIterator[tuple[Audit, Path]]:
    cp = tmp_path / "checkpoints" / "audit.jsonl"
    async with run_audit(chain_key=SecretStr(KEY), checkpoint_file=cp) as a:
        yield a, cp


async def _fill(a: Audit, n: int) -> None:
    async with publisher(a.root) as bus:
        for i in range(n):
            await bus.publish_event_now(event("call.completed", refs=EventRefs(tool="cp__t"), data={"i": i}))

    async def stored() -> bool:
        return (await a.sql("SELECT count(*) FROM events"))[0][0] >= n

    await wait_for(stored, what=f"{n} events stored")


async def _verify(a: Audit) -> dict:
    async with a.client() as c:
        r = await c.post("/v1/verify")
    assert r.status_code == 200, r.text
    return r.json()


async def _rechain_after_edit(a: Audit) -> tuple[int, int]:
    """What an attacker with database access and no key does: change a row, then recompute the
    hashes of it and every later row of its lane, and the lane's head. Returns (lane, seq)."""
    conn = await asyncpg.connect(a.dsn, server_settings={"search_path": "audit"})
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    try:
        lanes: dict[int, list[int]] = {}
        for r in await conn.fetch("SELECT lane, seq FROM events ORDER BY lane, seq"):
            lanes.setdefault(r["lane"], []).append(r["seq"])
        lane, seqs = max(lanes.items(), key=lambda kv: len(kv[1]))
        target = seqs[1]
        await conn.execute("UPDATE events SET data = jsonb_set(data, '{i}', '999') WHERE seq = $1", target)
        prev = bytes((await conn.fetchrow("SELECT hash FROM events WHERE seq = $1", seqs[0]))["hash"])
        for seq in seqs[1:]:
            row = await conn.fetchrow(f"SELECT {_EVENT_SELECT} FROM events WHERE seq = $1", seq)
            h = record_hash(prev, row)
            await conn.execute("UPDATE events SET prev_hash = $2, hash = $3 WHERE seq = $1", seq, prev, h)
            prev = h
        await conn.execute("UPDATE chain_lanes SET hash = $2 WHERE lane = $1", lane, prev)
    finally:
        await conn.close()
    return lane, target


async def test_a_row_edited_and_re_chained_with_sql_is_reported_by_verify(signed: tuple[Audit, Path]) -> None:
    a, cp_file = signed
    await _fill(a, 24)
    rep = await _verify(a)
    assert rep["ok"], rep
    assert rep["checkpoint"]["written"] and cp_file.exists()
    assert KEY not in cp_file.read_text()  # the signature, never the key
    assert not await a.sql("SELECT 1 FROM pg_stat_user_tables WHERE relname ILIKE '%checkpoint%'")

    lane, seq = await _rechain_after_edit(a)
    rep = await _verify(a)
    assert not rep["ok"], rep
    b = rep["first_break"]
    assert b["lane"] == lane and "signed in the checkpoint" in b["reason"], b
    # the unkeyed hash chain alone passes: the re-chained lane was checked to its head
    assert rep["checkpoint"]["break"] == b
    assert seq <= rep["lanes"][lane]["last_seq"]

    env = {"WARDEN_AUDIT_URL": a.url, "WARDEN_ADMIN_TOKEN": a.token}
    res = await asyncio.to_thread(CliRunner().invoke, cli_app, ["verify"], env=env)
    assert res.exit_code == 1 and "signed in the checkpoint" in res.output, res.output


async def test_an_altered_checkpoint_file_is_reported(signed: tuple[Audit, Path]) -> None:
    a, cp_file = signed
    await _fill(a, 8)
    assert (await _verify(a))["ok"]
    text = cp_file.read_text()
    doc = json.loads(text.splitlines()[-1])
    doc["lanes"][0]["hash"] = "00" * 32
    cp_file.write_text(text + json.dumps(doc) + "\n")
    rep = await _verify(a)
    assert not rep["ok"] and "does not match its signature" in rep["first_break"]["reason"]


async def test_an_execution_row_edited_with_sql_is_reported_by_verify(signed: tuple[Audit, Path]) -> None:
    """The executions table (folded, mutable rows) is covered too: each row is signed with the
    chain key when it is upserted, and verify checks every one."""
    a, _ = signed
    async with publisher(a.root) as bus:
        for i in range(3):
            refs = EventRefs(tool="cp__t", call_id=f"cp-call-{i}")
            await bus.publish_event_now(event("call.requested", refs=refs, data={"arguments": {"n": i}}))
            await bus.publish_event_now(event("call.completed", refs=refs, data={"result": {"ok": i}}))

    async def folded() -> bool:
        rows = await a.sql("SELECT count(*) FROM executions WHERE state = 'completed' AND mac IS NOT NULL")
        return rows[0][0] == 3

    await wait_for(folded, what="3 signed executions")
    rep = await _verify(a)
    assert rep["ok"] and rep["executions"] == {"checked": 3}, rep

    await a.sql("UPDATE executions SET result = '{\"ok\": \"forged\"}' WHERE call_id = 'cp-call-1'")
    rep = await _verify(a)
    assert not rep["ok"], rep
    b = rep["first_break"]
    assert b["id"] == "cp-call-1" and "does not match its signature" in b["reason"], b
    assert not rep["checkpoint"].get("written")  # a broken log is not sealed

    env = {"WARDEN_AUDIT_URL": a.url, "WARDEN_ADMIN_TOKEN": a.token}
    res = await asyncio.to_thread(CliRunner().invoke, cli_app, ["verify"], env=env)
    assert res.exit_code == 1 and "cp-call-1" in res.output, res.output

    # removing the signature is no way round it
    await a.sql("UPDATE executions SET mac = NULL WHERE call_id = 'cp-call-1'")
    rep = await _verify(a)
    assert not rep["ok"] and "has no signature" in rep["first_break"]["reason"], rep


async def test_executions_from_before_the_key_are_signed_by_the_first_verify(tmp_path: Path) -> None:
    """Turning the key on for an existing log: its executions rows (no signature yet) are
    signed once, by the first verify that finds no checkpoint, as the first checkpoint trusts
    the lanes; from then on an edit of one of them is reported."""
    root = unique_root()
    async with fresh_database() as db:
        async with run_audit(root=root, dsn=db) as a:
            async with publisher(a.root) as bus:
                refs = EventRefs(tool="cp__t", call_id="before-key")
                await bus.publish_event_now(event("call.requested", refs=refs, data={"arguments": {}}))

            async def folded() -> bool:
                return bool(await a.sql("SELECT 1 FROM executions WHERE call_id = 'before-key' AND mac IS NULL"))

            await wait_for(folded, what="an unsigned execution")
        cp = tmp_path / "cp.jsonl"
        async with run_audit(root=root, dsn=db, chain_key=SecretStr(KEY), checkpoint_file=cp) as a:
            rep = await _verify(a)
            assert rep["ok"] and rep["executions"]["checked"] == 1, rep
            await a.sql("UPDATE executions SET tool = 'forged__t' WHERE call_id = 'before-key'")
            rep = await _verify(a)
            assert not rep["ok"] and rep["first_break"]["id"] == "before-key", rep
