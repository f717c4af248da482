"""Two proxy replicas behind one NATS queue group: internal callers' requests are shared between
them, and a disconnect fails the connector's tools closed in both at once (each replica drops its
cached credential on the connector event); the live approval queue at one shows what is held and
decided at the other."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Any

import httpx
import pytest
from mcp import Client
from support.admin import admin_client, agent
from support.infra import wait_for
from support.replicas import second_proxy
from support.upstream import bearer_upstream
from warden_cli.embedded import Stack
from warden_client import WardenClient

pytestmark = pytest.mark.e2e


async def _ok_calls(http: httpx.AsyncClient, url: str) -> float:
    text = (await http.get(f"{url}/metrics")).text
    m = re.search(r'^warden_proxy_calls_total\{outcome="ok"\} ([0-9.e+]+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


async def test_two_replicas_share_calls_and_both_fail_closed_on_disconnect(stack: Stack, nats_url: str) -> None:
    async with (
        second_proxy(stack) as second,
        bearer_upstream() as up,
        admin_client(stack) as admin,
        httpx.AsyncClient(timeout=5, trust_env=False) as http,
    ):
        replicas = [stack.urls["proxy"], second]
        c, p, key = await admin.setup(up.url, up.token)
        before = [await _ok_calls(http, u) for u in replicas]
        async with WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root) as warden:
            results = await asyncio.gather(*(warden.call(f"{c}__echo", {"text": str(i)}) for i in range(60)))
        assert sorted(r.content[0]["text"] for r in results) == sorted(str(i) for i in range(60))
        served = [await _ok_calls(http, u) - b for u, b in zip(replicas, before, strict=True)]
        assert sum(served) == 60 and all(n > 0 for n in served), served  # the queue group split them

        async with agent(stack, key, base_url=replicas[0]) as a, agent(stack, key, base_url=replicas[1]) as b:
            for client in (a, b):  # both replicas hold the credential now
                assert not (await client.call_tool(f"{c}__echo", {"text": "warm"})).is_error
            await admin.req("POST", "connectors", f"/v1/connectors/{c}/disconnect")
            for client in (a, b):

                async def refused(client: Client = client) -> bool:
                    return bool((await client.call_tool(f"{c}__echo", {"text": "after"})).is_error)

                assert await wait_for(refused, timeout=2, interval=0.01)


async def test_the_live_approval_queue_at_one_replica_follows_calls_held_and_decided_at_the_other(
    stack: Stack,
) -> None:
    async with (
        second_proxy(stack) as second,
        bearer_upstream() as up,
        admin_client(stack) as admin,
        httpx.AsyncClient(timeout=60, trust_env=False) as http,
    ):
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "delete_note", "auto_approve": False}])
        key = await admin.key(await admin.profile([f"{c}__delete_note"]))
        tool = f"{c}__delete_note"
        snapshots: asyncio.Queue[list[dict[str, object]]] = asyncio.Queue()

        async def follow() -> None:  # the queue as the second replica streams it
            headers = {"Authorization": f"Bearer {stack.admin_token}", "Accept": "text/event-stream"}
            async with http.stream("GET", f"{second}/v1/approvals/stream", headers=headers) as r:
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                event = ""
                async for line in r.aiter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "approvals":
                        await snapshots.put([a for a in json.loads(line[5:]) if a["tool"] == tool])

        async def next_where(pred: Any) -> list[dict[str, object]]:
            async with asyncio.timeout(8):  # under the approval timeout: an expiry must not be what woke it
                while not pred(snap := await snapshots.get()):
                    pass
                return snap

        reader = asyncio.create_task(follow())
        try:
            assert await next_where(lambda s: True) == []
            # held at the first replica
            call = asyncio.create_task(
                http.post(
                    f"{stack.urls['proxy']}/v1/tools/{tool}/call",
                    json={"arguments": {"note_id": "n1"}},
                    headers={"Authorization": f"Bearer {key}"},
                )
            )
            [held] = await next_where(lambda s: len(s) == 1)
            assert held["arguments"] == {"note_id": "n1"} and held["status"] == "pending"
            # decided at the first replica: gone from the second's queue
            await admin.req("POST", "proxy", f"/v1/approvals/{held['id']}/approve", json={"reason": "fine"})
            assert await next_where(lambda s: s == []) == []
            assert (await call).status_code == 200
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
