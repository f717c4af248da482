"""An oversized call cannot silence the audit trail (issue 16 item 0): its events are stored
with the large values truncated (size and SHA-256 kept), the calls after it reach audit, and
an answer too large for the bus is refused with a clear error instead of a timeout."""

from __future__ import annotations

import hashlib

import httpx
import orjson
import pytest
from support.admin import admin_client, agent
from support.infra import wait_for
from support.upstream import catalog_upstream
from warden_cli.embedded import Stack

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
