"""A second, independent MCP client (npm @modelcontextprotocol/inspector-cli) against Warden,
over streamable HTTP at /mcp and legacy HTTP+SSE at /sse."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from support.admin import admin_client
from support.upstream import bearer_upstream
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e
PEERS = Path(__file__).resolve().parents[1] / "peers" / "mcp"


async def _inspector(*args: str) -> dict:
    binary = PEERS / "node_modules" / ".bin" / "mcp-inspector-cli"
    assert binary.exists(), "run `make peers` (npm) first"
    p = await asyncio.create_subprocess_exec(
        str(binary),
        "--cli",
        *args,
        cwd=PEERS / "node_modules",  # its parent must hold a package.json
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(p.communicate(), timeout=60)
    assert p.returncode == 0, err.decode()[-500:]
    return json.loads(out)


@pytest.mark.parametrize("transport,path", [("http", "/mcp"), ("sse", "/sse")])
async def test_inspector_cli_lists_and_calls_through_warden(stack: Stack, transport: str, path: str) -> None:
    async with bearer_upstream() as up, admin_client(stack) as admin:
        c, _, key = await admin.setup(up.url, up.token, grants_suffix="echo")
        common = [f"{stack.urls['proxy']}{path}", "--transport", transport, "--header", f"Authorization: Bearer {key}"]
        listed = await _inspector(*common, "--method", "tools/list")
        assert [t["name"] for t in listed["tools"]] == [f"{c}__echo"]
        called = await _inspector(
            *common, "--method", "tools/call", "--tool-name", f"{c}__echo", "--tool-arg", "text=from inspector"
        )
        assert called["content"][0]["text"] == "from inspector"
        assert up.token not in json.dumps(listed) + json.dumps(called)
