"""`WARDEN_PROXY_MAX_ARGUMENT_BYTES` is enforced on every path a call comes in by: MCP gets
-32602 naming the limit, HTTP 413, NATS a typed `invalid` error; the refusal is audited and
the upstream never sees the call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from mcp.shared.exceptions import MCPError
from support.admin import admin_client, agent
from support.infra import isolated_stack, wait_for
from support.upstream import trouble_upstream
from warden_cli.embedded import Stack
from warden_client import WardenClient
from warden_common.errors import BadInput

pytestmark = pytest.mark.e2e

LIMIT = 4096


@pytest.fixture
async def small_stack(nats_url: str, admin_dsn: str, tmp_path: Path) -> AsyncIterator[Stack]:
    env = {"proxy": {"WARDEN_PROXY_MAX_ARGUMENT_BYTES": str(LIMIT)}}
    async with isolated_stack(nats_url, admin_dsn, tmp_path, env) as st:
        yield st


async def test_arguments_over_the_limit_are_refused_on_every_path(small_stack: Stack, nats_url: str) -> None:
    stack = small_stack
    big = {"key": "x" * (LIMIT + 100)}
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c, p, key = await admin.setup(up.url, up.token)
        tool = f"{c}__record"
        async with agent(stack, key) as client:
            ok = await client.call_tool(tool, {"key": "small"})
            assert not ok.is_error
            with pytest.raises(MCPError) as e:
                await client.call_tool(tool, big)
            assert e.value.code == -32602
            assert f"{LIMIT:,}" in e.value.message and "WARDEN_PROXY_MAX_ARGUMENT_BYTES" in e.value.message
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.post(
                f"{stack.urls['proxy']}/v1/tools/{tool}/call",
                headers={"Authorization": f"Bearer {key}"},
                json={"arguments": big},
            )
            assert r.status_code == 413, r.text
        async with WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root) as warden:
            with pytest.raises(BadInput, match="at most"):
                await warden.call(tool, big)
        assert up.trouble.executions.get("x" * (LIMIT + 100)) is None
        assert set(up.trouble.executions) == {"small"}

        async def denied() -> list[dict]:  # type: ignore[type-arg]
            got = await admin.req("GET", "audit", "/v1/events", params={"tool": tool, "type": "call.denied"})
            return [e for e in got["items"] if "at most" in (e.get("data") or {}).get("reason", "")]

        assert len(await wait_for(lambda: _at_least(denied, 3), timeout=20)) >= 3


async def _at_least(f, n: int):  # type: ignore[no-untyped-def]
    got = await f()
    return got if len(got) >= n else None
