"""The embedded run (`warden run`, and the tests' stack, which is the same `Stack`) turns the
audit's tamper evidence on by default (issue 16 item 11d): a chain key in its own file in the
data folder, signed checkpoints beside it, every executions row signed; `verify` checks them."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest
from support.infra import wait_for
from warden_cli.embedded import Stack
from warden_common.bus import Bus
from warden_common.contracts import Event, EventRefs, Service
from warden_common.settings import NatsSettings

pytestmark = pytest.mark.e2e


async def test_the_embedded_run_signs_checkpoints_and_executions(stack: Stack, nats_url: str) -> None:
    key_file, cp_file = stack.audit_chain_key_file, stack.audit_checkpoint_file
    assert key_file.stat().st_mode & 0o077 == 0 and len(key_file.read_bytes().strip()) >= 16
    env = stack.service_env("audit", "WARDEN_AUDIT_")
    assert env["WARDEN_AUDIT_CHAIN_KEY_FILE"] == str(key_file)
    assert env["WARDEN_AUDIT_CHECKPOINT_FILE"] == str(cp_file)

    call_id = f"signed-{uuid.uuid4().hex[:8]}"
    bus = Bus(NatsSettings(url=nats_url, root=stack.cfg.root), Service.proxy)
    await bus.connect()
    try:
        refs = EventRefs(tool="sig__t", call_id=call_id)
        await bus.publish_event_now(Event(type="call.requested", source=Service.proxy, refs=refs, data={}))
        await bus.publish_event_now(Event(type="call.completed", source=Service.proxy, refs=refs, data={}))
    finally:
        await bus.close()

    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    async with httpx.AsyncClient(base_url=stack.urls["audit"], headers=admin, timeout=60) as http:

        async def folded() -> bool:
            r = await http.get(f"/v1/executions/{call_id}")
            return r.status_code == 200 and r.json()["state"] == "completed"

        await wait_for(folded, timeout=30)
        rep = (await http.post("/v1/verify")).json()
        assert rep["ok"], rep
        assert rep["checkpoint"]["written"] and rep["executions"]["checked"] >= 1, rep
        assert cp_file.exists() and key_file.read_text().strip() not in cp_file.read_text()

        conn = await asyncpg.connect(stack.database_url)
        try:
            was = await conn.fetchval("SELECT status FROM audit.executions WHERE call_id = $1", call_id)
            await conn.execute("UPDATE audit.executions SET status = 'forged' WHERE call_id = $1", call_id)
        finally:
            await conn.close()
        rep = (await http.post("/v1/verify")).json()
        assert not rep["ok"] and rep["first_break"]["id"] == call_id, rep
        # put back: the signature covers the value, so the shared stack verifies again
        conn = await asyncpg.connect(stack.database_url)
        try:
            await conn.execute("UPDATE audit.executions SET status = $2 WHERE call_id = $1", call_id, was)
        finally:
            await conn.close()
        assert (await http.post("/v1/verify")).json()["ok"]
