"""Tamper evidence: verify passes on an intact chain and names the first break after a
row is changed or removed with SQL; retention drops whole days and the chain still holds."""

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


async def _verify(a: Audit, **params: str) -> dict:
    async with a.client() as c:
        r = await c.post("/v1/verify", params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def test_verify_passes_then_reports_the_first_tampered_row(own: Audit) -> None:
    await _fill(own, 50)
    rep = await _verify(own)
    assert rep["ok"] and rep["checked"] == 50 and rep["head"]["seq"] == 50 and rep["first_break"] is None

    # CLI, same answer
    env = {"WARDEN_AUDIT_URL": own.url, "WARDEN_ADMIN_TOKEN": own.token}
    res = await asyncio.to_thread(CliRunner().invoke, cli_app, ["verify"], env=env)
    assert res.exit_code == 0 and "chain ok: 50 rows" in res.output

    await own.sql("UPDATE events SET data = jsonb_set(data, '{i}', '999') WHERE seq = 17")
    await own.sql("UPDATE events SET status = 'ok?' WHERE seq = 30")
    rep = await _verify(own)
    assert not rep["ok"]
    assert rep["first_break"]["seq"] == 17 and "changed" in rep["first_break"]["reason"]
    assert rep["checked"] == 16
    res = await asyncio.to_thread(CliRunner().invoke, cli_app, ["verify"], env=env)
    assert res.exit_code == 1 and "BROKEN at seq 17" in res.output


async def test_verify_reports_removed_rows(own: Audit) -> None:
    await _fill(own, 20)
    await own.sql("DELETE FROM events WHERE seq = 8")
    rep = await _verify(own)
    assert rep["first_break"]["seq"] == 8 and "missing" in rep["first_break"]["reason"]


async def test_verify_reports_rows_removed_at_the_end(own: Audit) -> None:
    await _fill(own, 10)
    await own.sql("DELETE FROM events WHERE seq >= 9")
    rep = await _verify(own)
    assert rep["first_break"]["seq"] == 9 and "chain head" in rep["first_break"]["reason"]


async def test_verify_over_a_time_range(own: Audit) -> None:
    await _fill(own, 5)
    await _fill(own, 5, total=10)  # a later batch (a batch shares its ingest time)
    mid = (await own.sql("SELECT ingested_at FROM events WHERE seq = 6"))[0][0]
    rep = await _verify(own, since=mid.isoformat())
    assert rep["ok"] and rep["first_seq"] == 6 and rep["last_seq"] == 10, rep


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
    assert rep["ok"] and rep["first_seq"] == 11 and rep["checked"] == 5, rep


def test_a_bad_setting_prints_one_line_and_exits_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_AUDIT_")}
    env |= {"WARDEN_AUDIT_POSTGRES__DSN": "postgresql://x@127.0.0.1/x", "WARDEN_AUDIT_ADMIN_TOKEN": "short"}
    p = subprocess.run([sys.executable, "-m", "warden_audit"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("warden-audit: bad setting: WARDEN_AUDIT_ADMIN_TOKEN: ") and "16" in line
