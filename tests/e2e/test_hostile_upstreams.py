"""Upstreams that answer too much or garbage (issue 16, item 0).

- A tool result with more content items than `WARDEN_PROXY_MAX_RESULT_ITEMS` is refused
  before it is built: an `isError` result naming the limit on MCP, a typed `upstream_error`
  over HTTP (502) and NATS, a `call.failed` event with the reason; the breaker does not count it.
- An upstream answering something that is not JSON (as `application/json` or as an SSE
  event) gets "the upstream answered invalid JSON" on every path, tools/list (discovery)
  included, and its calls are audited as `call.failed`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from support.admin import admin_client, agent
from support.hostile import hostile_upstream
from support.infra import isolated_stack, wait_for
from warden_cli.embedded import Stack
from warden_client import WardenClient
from warden_common.errors import RemoteError

pytestmark = pytest.mark.e2e

LIMIT = 100


@pytest.fixture
async def small_stack(nats_url: str, admin_dsn: str, tmp_path: Path) -> AsyncIterator[Stack]:
    env = {"proxy": {"WARDEN_PROXY_MAX_RESULT_ITEMS": str(LIMIT), "WARDEN_PROXY_BREAKER_THRESHOLD": "2"}}
    async with isolated_stack(nats_url, admin_dsn, tmp_path, env) as st:
        yield st


async def _failed(admin, tool: str, needle: str, n: int) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    async def found() -> list[dict] | None:  # type: ignore[type-arg]
        got = await admin.req("GET", "audit", "/v1/events", params={"tool": tool, "type": "call.failed"})
        hits = [e for e in got["items"] if needle in (e.get("data") or {}).get("reason", "")]
        return hits if len(hits) >= n else None

    return await wait_for(found, timeout=20)  # type: ignore[no-any-return]


async def test_a_result_with_too_many_items_is_refused_on_every_path(small_stack: Stack, nats_url: str) -> None:
    stack = small_stack
    async with hostile_upstream() as up, admin_client(stack) as admin:
        c, p, key = await admin.setup(up.url, up.token)
        tool = f"{c}__items"
        async with agent(stack, key) as client:
            ok = await client.call_tool(tool, {"count": LIMIT})
            assert not ok.is_error and len(ok.content) == LIMIT
            refused = await client.call_tool(tool, {"count": LIMIT + 50})
            assert refused.is_error
            text = refused.content[0].text  # type: ignore[union-attr]
            assert f"{LIMIT + 50:,} items" in text and f"at most {LIMIT:,}" in text
            assert "WARDEN_PROXY_MAX_RESULT_ITEMS" in text
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.post(
                f"{stack.urls['proxy']}/v1/tools/{tool}/call",
                headers={"Authorization": f"Bearer {key}"},
                json={"arguments": {"count": LIMIT + 1}},
            )
            assert r.status_code == 502, r.text
            err = r.json()["error"]
            assert err["code"] == "upstream_error" and "WARDEN_PROXY_MAX_RESULT_ITEMS" in err["message"]
            assert err["details"] == {"items": LIMIT + 1, "limit": LIMIT}
        async with WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root) as warden:
            with pytest.raises(RemoteError) as e:
                await warden.call(tool, {"count": 5 * LIMIT})
            assert str(e.value.code) == "upstream_error" and not e.value.retryable
            assert "WARDEN_PROXY_MAX_RESULT_ITEMS" in e.value.message
            # three refusals with a breaker threshold of two: the upstream is up, the breaker stays closed
            again = await warden.call(tool, {"count": 3})
            assert not again.is_error and len(again.content) == 3
        await _failed(admin, tool, "WARDEN_PROXY_MAX_RESULT_ITEMS", 3)


@pytest.mark.parametrize("how", ["json", "sse"])
async def test_an_upstream_answering_invalid_json_is_named_and_audited(stack: Stack, nats_url: str, how: str) -> None:
    async with hostile_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        up.garble["tools/list"] = how  # type: ignore[assignment]
        r = await admin.http.post(f"{stack.urls['registry']}/v1/connectors/{c}/tools", json={})
        assert r.status_code == 502, r.text
        assert "answered invalid JSON" in r.json()["error"]["message"]
        del up.garble["tools/list"]
        await admin.register(c)
        p = await admin.profile([f"{c}__*"])
        key = await admin.key(p)
        tool = f"{c}__echo"
        up.garble["tools/call"] = how  # type: ignore[assignment]
        async with agent(stack, key) as client:
            res = await client.call_tool(tool, {"text": "hi"})
            assert res.is_error
            assert "answered invalid JSON" in res.content[0].text  # type: ignore[union-attr]
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.post(
                f"{stack.urls['proxy']}/v1/tools/{tool}/call",
                headers={"Authorization": f"Bearer {key}"},
                json={"arguments": {"text": "hi"}},
            )
            assert r.status_code == 502, r.text
            assert r.json()["error"]["code"] == "upstream_error"
            assert "answered invalid JSON" in r.json()["error"]["message"]
        async with WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root) as warden:
            with pytest.raises(RemoteError, match="answered invalid JSON") as e:
                await warden.call(tool, {"text": "hi"})
            assert str(e.value.code) == "upstream_error"
        await _failed(admin, tool, "answered invalid JSON", 3)
