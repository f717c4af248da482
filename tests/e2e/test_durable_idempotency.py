"""Durable calls are idempotent per key without JetStream's message id: the key is claimed in
Postgres before the call runs (one winner; every other delivery waits for its result), the
same key for another call is refused with a typed conflict, and a malformed durable message
is answered with a typed error (issue 16 item 11c). Real NATS, Postgres, proxy, MCP server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from support.admin import admin_client
from support.infra import wait_for
from support.upstream import trouble_upstream
from warden_cli.embedded import Stack
from warden_client import WardenClient
from warden_common.contracts import DurableCall, DurableResult, durable_calls_subject, durable_results_subject
from warden_common.errors import Conflict

pytestmark = pytest.mark.e2e


async def _deliveries(stack: Stack, profile: str, key: str) -> int:
    conn = await asyncpg.connect(stack.database_url)
    try:
        n = await conn.fetchval("SELECT deliveries FROM proxy.durable_calls WHERE call_key = $1", f"{profile}:{key}")
    finally:
        await conn.close()
    return int(n or 0)


async def _listen(warden: WardenClient, root: str, profile: str, key: str) -> tuple[Any, list[DurableResult]]:
    got: list[DurableResult] = []

    async def on(m: Any) -> None:
        got.append(DurableResult.model_validate_json(m.data))

    sub = await warden.nc.subscribe(durable_results_subject(root, profile, key), cb=on)
    await warden.nc.flush()
    return sub, got


async def test_five_raw_publishes_of_one_key_run_the_upstream_once(stack: Stack, nats_url: str) -> None:
    """No `Nats-Msg-Id`, so JetStream keeps all five: the proxy's claim is what holds."""
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c)
        p = await admin.profile([f"{c}__*"])
        root = stack.cfg.root
        async with WardenClient(nats_url=nats_url, profile=p, root=root) as warden:
            sub, got = await _listen(warden, root, p, "raw-5")
            body = DurableCall(
                tool=f"{c}__wait_for_release", arguments={"key": "raw5"}, idempotency_key="raw-5"
            ).model_dump_json()
            js = warden.nc.jetstream()
            for _ in range(5):
                await js.publish(durable_calls_subject(root, p), body.encode(), timeout=10)

            async def all_delivered() -> bool:
                return await _deliveries(stack, p, "raw-5") >= 5

            await wait_for(all_delivered, timeout=30)  # every delivery has claimed (or not) by now
            up.trouble.release.set()
            await wait_for(lambda: asyncio.sleep(0, len(got) >= 5), timeout=30)
            await sub.unsubscribe()
        assert up.trouble.executions == {"raw5": 1}
        assert {(r.error is None, r.result.content[0]["text"] if r.result else None) for r in got} == {
            (True, "released raw5")
        }


async def test_four_concurrent_durable_calls_with_one_key_all_get_the_one_result(stack: Stack, nats_url: str) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c)
        p = await admin.profile([f"{c}__*"])
        async with WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root, timeout_s=60) as warden:
            for n in range(10):
                results = await asyncio.gather(
                    *(
                        warden.call_durable(f"{c}__record", {"key": f"c{n}"}, idempotency_key=f"four-{n}")
                        for _ in range(4)
                    )
                )
                assert [r.content[0]["text"] for r in results] == [f"c{n}:1"] * 4
        assert up.trouble.executions == {f"c{n}": 1 for n in range(10)}


async def test_the_same_key_for_another_call_is_a_typed_conflict(stack: Stack, nats_url: str) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c)
        p = await admin.profile([f"{c}__*"])
        root = stack.cfg.root
        async with WardenClient(nats_url=nats_url, profile=p, root=root, timeout_s=60) as warden:
            first = await warden.call_durable(f"{c}__record", {"key": "x1"}, idempotency_key="same-key")
            assert first.content[0]["text"] == "x1:1"
            # through the client (the stream de-duplicates the message id: the stored call decides)
            with pytest.raises(Conflict) as e:
                await warden.call_durable(f"{c}__record", {"key": "x2"}, idempotency_key="same-key")
            assert "another call" in e.value.message
            # published raw without a message id: the proxy refuses it, to that caller only
            sub, got = await _listen(warden, root, p, "same-key")
            other = DurableCall(tool=f"{c}__record", arguments={"key": "x3"}, idempotency_key="same-key")
            await warden.nc.jetstream().publish(durable_calls_subject(root, p), other.model_dump_json().encode())
            await wait_for(lambda: asyncio.sleep(0, got), timeout=30)
            await sub.unsubscribe()
            assert got[0].error is not None and got[0].error["code"] == "conflict"
            assert got[0].fingerprint == other.fingerprint()
            # the first call's own repeat still gets its stored result
            again = await warden.call_durable(f"{c}__record", {"key": "x1"}, idempotency_key="same-key")
            assert again.content[0]["text"] == "x1:1"
        assert up.trouble.executions == {"x1": 1}


async def test_a_malformed_durable_message_is_answered_with_a_typed_error(stack: Stack, nats_url: str) -> None:
    async with admin_client(stack) as admin:
        p = await admin.profile([])
        root = stack.cfg.root
        async with WardenClient(nats_url=nats_url, profile=p, root=root, timeout_s=60) as warden:
            sub, got = await _listen(warden, root, p, "bad-1")
            bad = json.dumps({"idempotency_key": "bad-1", "arguments": "not an object"}).encode()
            await warden.nc.jetstream().publish(durable_calls_subject(root, p), bad)
            await wait_for(lambda: asyncio.sleep(0, got), timeout=30)
            await sub.unsubscribe()
        err = got[0].error
        assert err is not None and err["code"] == "invalid" and "tool" in err["message"]
        assert got[0].fingerprint == "malformed"
