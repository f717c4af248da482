"""A proxy SIGKILLed with a call's events still in its outbox loses none of them (issue 14: the
scale-out drill lost the events of the one MCP call in flight on the killed proxy). The events
stream is made to refuse new messages while the call runs, so its events are certainly still in
the outbox when the proxy dies; the restarted proxy publishes them from its journal."""

from __future__ import annotations

import os
import signal
import uuid
from typing import Any

import httpx
import nats
import pytest
from nats.js.api import DiscardPolicy
from support.admin import admin_client, agent
from support.infra import wait_for
from support.upstream import catalog_upstream
from warden_cli.embedded import Stack
from warden_common.contracts.events import events_stream_name

pytestmark = pytest.mark.e2e


async def _outbox_depth(stack: Stack) -> float:
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(f"{stack.urls['proxy']}/metrics")).text
    for line in text.splitlines():
        if line.startswith('warden_event_outbox_depth{service="proxy"}'):
            return float(line.split()[-1])
    raise AssertionError("no warden_event_outbox_depth for the proxy in /metrics")


async def test_a_sigkilled_proxy_s_unstored_call_events_reach_audit_after_it_restarts(
    stack: Stack, nats_url: str
) -> None:
    tools = {"echo": {"description": "echo", "input_schema": {"type": "object"}}}
    marker = uuid.uuid4().hex
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    stream = events_stream_name(stack.cfg.root)
    info = await js.stream_info(stream)
    normal: Any = info.config
    try:
        async with catalog_upstream(tools) as up, admin_client(stack) as admin:
            c, p, key = await admin.setup(up.url, None)
            # the stream takes no new message from now on: every event waits in its outbox
            blocked = await js.stream_info(stream)
            cfg = blocked.config
            cfg.max_msgs, cfg.discard = max(1, blocked.state.messages), DiscardPolicy.NEW
            await js.update_stream(cfg)
            async with agent(stack, key) as client:
                ok = await client.call_tool(f"{c}__echo", {"marker": marker})
                assert not ok.is_error
            assert await wait_for(lambda: _depth_at_least(stack, 2), timeout=10)

            proxy = next(x for x in stack.procs if x.name == "proxy")
            os.killpg(proxy.popen.pid, signal.SIGKILL)
            proxy.popen.wait(10)
            stack.procs.remove(proxy)
            await js.update_stream(normal)  # the stream takes messages again
            stack.start_service("proxy")
            await stack.wait_ready(["proxy"])

            async def stored() -> list[dict[str, Any]] | None:
                # the profile is this test's own: its events are the one call's
                got = await admin.req("GET", "audit", "/v1/events", params={"profile": p, "limit": 100})
                types = {e["type"] for e in got["items"]}
                return got["items"] if {"call.requested", "call.completed"} <= types else None

            items = await wait_for(stored, timeout=60, interval=0.5)
            (requested,) = [e for e in items if e["type"] == "call.requested"]
            assert requested["data"]["arguments"] == {"marker": marker}
            assert len({e["id"] for e in items}) == len(items)  # each stored once
    finally:
        await js.update_stream(normal)
        await nc.close()


async def _depth_at_least(stack: Stack, n: int) -> bool:
    return await _outbox_depth(stack) >= n
