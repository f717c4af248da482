"""An oversized call cannot silence the audit trail (issue 16 item 0): its events are stored
with the large values truncated (size and SHA-256 kept), the calls after it reach audit, and
an answer too large for the bus is refused with a clear error instead of a timeout."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from support.admin import admin_client, agent
from support.infra import isolated_stack, wait_for
from support.upstream import catalog_upstream
from warden_cli.embedded import Stack
from warden_client import WardenClient
from warden_common.errors import TooLarge

pytestmark = pytest.mark.e2e

BIG = 9 * 1000 * 1000  # 9 MB: over the bus's max_payload (1 MiB on the test server, 8 MiB embedded)


async def test_a_9_mb_call_then_ten_small_calls_all_reach_audit(stack: Stack) -> None:
    tools = {"echo": {"description": "echo", "input_schema": {"type": "object"}}}
    async with catalog_upstream(tools) as up, admin_client(stack) as admin:
        c, p, key = await admin.setup(up.url, None)
        tool = f"{c}__echo"
        big = "x" * BIG
        async with httpx.AsyncClient(timeout=60) as http:
            # a tool that does not exist: refused, but its call.requested event carries the 9 MB
            r = await http.post(
                f"{stack.urls['proxy']}/v1/tools/{c}__nope/call",
                headers={"Authorization": f"Bearer {key}"},
                json={"arguments": {"blob": big}},
            )
            assert r.status_code in (400, 403, 404, 413), r.text
        async with agent(stack, key) as client:
            for i in range(10):
                ok = await client.call_tool(tool, {"n": i})
                assert not ok.is_error

        async def requested() -> list[dict] | None:  # type: ignore[type-arg]
            got = await admin.req(
                "GET", "audit", "/v1/events", params={"profile": p, "type": "call.requested", "limit": 100}
            )
            items = got["items"]
            return items if len(items) >= 11 else None

        items = await wait_for(requested, timeout=30)
        assert len({e["refs"]["call_id"] for e in items}) == 11
        small = sorted(e["data"]["arguments"]["n"] for e in items if e["refs"]["tool"] == tool)
        assert small == list(range(10))
        (huge,) = [e for e in items if e["refs"]["tool"] == f"{c}__nope"]
        blob = huge["data"]["arguments"]["blob"]
        assert blob["truncated"] is True
        assert blob["bytes"] == BIG
        assert blob["sha256"] == hashlib.sha256(big.encode()).hexdigest()
        assert len(orjson.dumps(huge)) < 64 * 1024


async def test_a_tools_list_over_the_bus_limit_is_refused_with_a_clear_error(stack: Stack) -> None:
    # two tools of 700 kB of description each: the proxy's answer to the registry is over 1 MiB
    desc = "d" * 700_000
    tools = {f"t{i}": {"description": desc, "input_schema": {"type": "object"}} for i in range(2)}
    async with catalog_upstream(tools) as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, None)
        r = await admin.http.post(f"{stack.urls['registry']}/v1/connectors/{c}/tools", json={})
        assert r.status_code >= 400, r.text
        body = r.json()["error"]
        assert "bus limit" in body["message"], body
        assert "max_payload" in body["message"] or "MAX_MESSAGE_BYTES" in body["message"], body
        assert body["code"] != "timeout", body


PROXY_LIMIT = 256 * 1024


@pytest.fixture
async def small_bus_stack(nats_url: str, admin_dsn: str, tmp_path: Path) -> AsyncIterator[Stack]:
    # the proxy sends at most 256 KiB per message (events at most 128 KiB): one coherent set
    env = {
        "proxy": {
            "WARDEN_PROXY_NATS__MAX_MESSAGE_BYTES": str(PROXY_LIMIT),
            "WARDEN_PROXY_NATS__EVENT_MAX_BYTES": str(128 * 1024),
            "WARDEN_PROXY_NATS__EVENT_VALUE_MAX_BYTES": str(16 * 1024),
        }
    }
    async with isolated_stack(nats_url, admin_dsn, tmp_path, env) as st:
        yield st


async def test_a_tool_result_over_the_bus_limit_is_a_clear_error_and_the_call_is_audited(
    small_bus_stack: Stack, nats_url: str
) -> None:
    stack = small_bus_stack
    tools = {"echo": {"description": "echo", "input_schema": {"type": "object"}}}
    async with catalog_upstream(tools) as up, admin_client(stack) as admin:
        c, p, _ = await admin.setup(up.url, None)
        tool = f"{c}__echo"
        payload = {"blob": "y" * 300_000}  # the upstream echoes it: a 300 kB result
        async with WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root, timeout_s=60) as warden:
            with pytest.raises(TooLarge) as e:
                await warden.call(tool, payload)
            assert "over the bus limit" in e.value.message and f"{PROXY_LIMIT - 4096:,}" in e.value.message
            assert "WARDEN_PROXY_NATS__MAX_MESSAGE_BYTES" in e.value.message
            with pytest.raises(TooLarge, match="result of durable call"):
                await warden.call_durable(tool, payload, idempotency_key="big-1", timeout_s=60)
            ok = await warden.call(tool, {"n": 1})  # the bus is not stuck behind it
            assert not ok.is_error

        async def completed() -> list[dict] | None:  # type: ignore[type-arg]
            got = await admin.req("GET", "audit", "/v1/events", params={"tool": tool, "type": "call.completed"})
            return got["items"] if len(got["items"]) >= 3 else None

        items = await wait_for(completed, timeout=30)
        # the tool ran; its result is in the audit trail, truncated with size and hash
        texts = [e["data"]["result"]["content"][0]["text"] for e in items]
        big = [t for t in texts if isinstance(t, dict)]
        assert len(big) == 2 and all(t["truncated"] and t["bytes"] > 300_000 for t in big)
        assert all(len(orjson.dumps(e)) < 128 * 1024 for e in items)
