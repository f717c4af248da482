"""Two proxy replicas behind one NATS queue group: internal callers' requests are shared between
them, and a disconnect fails the connector's tools closed in both at once (each replica drops its
cached credential on the connector event)."""

from __future__ import annotations

import asyncio
import re

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
