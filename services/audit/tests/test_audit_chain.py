"""Tamper evidence: verify passes on intact lanes and names the first break (lane, row,
why) after a row is changed or removed with SQL; retention drops whole days and every lane
still holds. (More on lanes in test_audit_lanes.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from audit_support import Audit, event, publisher, run_audit, wait_for
from typer.testing import CliRunner
from warden_audit.cli import app as cli_app
from warden_audit.maintenance import Maintenance
from warden_audit.store import Store
from warden_common.contracts import EventRefs


@pytest.fixture
async def own() -> AsyncIterator[Audit]:
    """A separate instance: these tests damage the chain on purpose."""
    async with run_audit() as a:
        yield a


async def _fill(a: Audit, n: int, total: int | None = None) -> list[str]:
    """Publish n events and wait until the database holds `total` (default n)."""
    async with publisher(a.root) as bus:
        evs = [event("call.completed", refs=EventRefs(tool="chain__t"), data={"i": i, "f": i / 3}) for i in range(n)]
        for ev in evs:
            await bus.publish_event_now(ev)

    async def stored() -> bool:
        return (await a.sql("SELECT count(*) FROM events"))[0][0] >= (total or n)

    await wait_for(stored, what=f"{total or n} events stored")
    return [ev.id for ev in evs]


async def _longest_lane(a: Audit) -> tuple[int, list[int]]:
    """The lane with the most rows, and its seqs in order."""
    lanes: dict[int, list[int]] = {}
    for r in await a.sql("SELECT lane, seq FROM events ORDER BY lane, seq"):
        lanes.setdefault(r["lane"], []).append(r["seq"])
    return max(lanes.items(), key=lambda kv: len(kv[1]))


async def _verify(a: Audit, **params: str) -> dict:
    async with a.client() as c:
        r = await c.post("/v1/verify", params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def test_verify_passes_then_reports_the_first_tampered_row(own: Audit) -> None:
    await _fill(own, 50)
    rep = await _verify(own)
    assert rep["ok"] and rep["checked"] == 50 and rep["first_break"] is None
    assert sum(ln["head"]["lane_seq"] for ln in rep["lanes"]) == 50

    # CLI, same answer
    env = {"WARDEN_AUDIT_URL": own.url, "WARDEN_ADMIN_TOKEN": own.token}
    res = await asyncio.to_thread(CliRunner().invoke, cli_app, ["verify"], env=env)
    assert res.exit_code == 0 and "chain ok: 50 rows in 4 lanes" in res.output

    lane, seqs = await _longest_lane(own)
    assert len(seqs) >= 3
    await own.sql("UPDATE events SET data = jsonb_set(data, '{i}', '999') WHERE seq = $1", seqs[1])
    await own.sql("UPDATE events SET status = 'ok?' WHERE seq = $1", seqs[2])
    rep = await _verify(own)
    assert not rep["ok"]
    b = rep["first_break"]
    assert b["lane"] == lane and b["seq"] == seqs[1] and "changed" in b["reason"]
    assert rep["checked"] == 50 - len(seqs) + 1
    res = await asyncio.to_thread(CliRunner().invoke, cli_app, ["verify"], env=env)
    assert res.exit_code == 1 and f"BROKEN in lane {lane} at seq {seqs[1]}" in res.output


async def test_verify_reports_removed_rows(own: Audit) -> None:
    await _fill(own, 20)
    lane, seqs = await _longest_lane(own)
    assert len(seqs) >= 3
    await own.sql("DELETE FROM events WHERE seq = $1", seqs[1])
    b = (await _verify(own))["first_break"]
    assert b["lane"] == lane and b["seq"] == seqs[1] and "missing" in b["reason"]


async def test_verify_reports_rows_removed_at_the_end(own: Audit) -> None:
    await _fill(own, 10)
    lane, seqs = await _longest_lane(own)
    await own.sql("DELETE FROM events WHERE seq = ANY($1::int8[])", seqs[-2:])
    b = (await _verify(own))["first_break"]
    assert b["lane"] == lane and b["seq"] == seqs[-2] and "up to its head" in b["reason"]


async def test_verify_over_a_time_range(own: Audit) -> None:
    await _fill(own, 5)
    later = await _fill(own, 5, total=10)  # later batches (a batch shares its ingest time)
    mid = (await own.sql("SELECT min(ingested_at) FROM events WHERE id = ANY($1::text[])", later))[0][0]
    rep = await _verify(own, since=mid.isoformat())
    assert rep["ok"] and rep["checked"] == 5, rep


async def test_retention_drops_old_days_and_the_chain_still_verifies(own: Audit) -> None:
    ids = await _fill(own, 10)
    pool = await asyncpg.create_pool(own.dsn, min_size=1, max_size=2, server_settings={"search_path": "audit"})
    try:
        m = Maintenance(Store(pool), retention_days=1, batch=3)
        out = await m.run_once(now=datetime.now(UTC) + timedelta(days=2))
        assert out["ran"] and out["events_removed"] == 10 and len(out["partitions_dropped"]) >= 1
    finally:
        await pool.close()
    assert (await own.sql("SELECT count(*) FROM events"))[0][0] == 0
    assert (await own.sql("SELECT count(*) FROM event_ids WHERE id = ANY($1::text[])", ids))[0][0] == 0
    # ingest goes on (the day's partition is created again) and the chain links to the anchor
    await _fill(own, 5)
    rep = await _verify(own)
    assert rep["ok"] and rep["checked"] == 5, rep
    # each lane's first remaining row links to that lane's anchor
    anchors = {r["lane"]: r["seq"] for r in await own.sql("SELECT lane, seq FROM chain_anchor")}
    assert anchors and all(r["seq"] > anchors.get(r["lane"], 0) for r in await own.sql("SELECT lane, seq FROM events"))


def test_a_bad_setting_prints_one_line_and_exits_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_AUDIT_")}
    env |= {"WARDEN_AUDIT_POSTGRES__DSN": "postgresql://x@127.0.0.1/x", "WARDEN_AUDIT_ADMIN_TOKEN": "short"}
    p = subprocess.run([sys.executable, "-m", "warden_audit"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("warden-audit: bad setting: WARDEN_AUDIT_ADMIN_TOKEN: ") and "16" in line
