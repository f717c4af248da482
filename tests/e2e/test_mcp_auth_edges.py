"""The MCP endpoint's edges as a client meets them: the 401 challenge (RFC 6750 §3.1 and
RFC 9728), the metadata it points to, and an argument error that names the field."""

from __future__ import annotations

import httpx
import pytest
from mcp.shared.exceptions import MCPError
from support.admin import admin_client, agent
from support.upstream import trouble_upstream
from warden_cli.embedded import Stack
from warden_common.rfc6750 import parse_bearer_challenge

pytestmark = pytest.mark.e2e

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


async def test_401_without_credentials_has_no_error_code_and_points_at_working_metadata(stack: Stack) -> None:
    mcp = f"{stack.urls['proxy']}/mcp"
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(timeout=10) as http:
        bare = await http.post(mcp, json=INIT, headers=headers)
        assert bare.status_code == 401
        challenge = bare.headers["www-authenticate"]
        assert "error=" not in challenge, challenge
        bad = await http.post(mcp, json=INIT, headers={**headers, "Authorization": "Bearer wk_not-a-real-key"})
        assert bad.status_code == 401
        assert 'error="invalid_token"' in bad.headers["www-authenticate"]
        for r in (bare, bad):
            ch = parse_bearer_challenge(r.headers["www-authenticate"])
            assert ch is not None
            url = ch.resource_metadata
            assert url
            assert url == f"{stack.urls['proxy']}/.well-known/oauth-protected-resource/mcp"
            meta = (await http.get(url)).json()
            assert meta["resource"] == mcp
            assert meta.get("authorization_servers", ["x"]) != [], "an empty list makes clients try OAuth and stop"


async def test_a_missing_required_argument_names_the_field(stack: Stack) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c, _, key = await admin.setup(up.url, up.token)
        async with agent(stack, key) as client:
            with pytest.raises(MCPError) as e:
                await client.call_tool(f"{c}__typed", {"count": 3})
            assert e.value.code == -32602
            assert "label" in e.value.message and "(arguments)" not in e.value.message
