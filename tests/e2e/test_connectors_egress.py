"""Connectors is a second, narrower egress (decided for issue 16 item 14): towards an upstream
MCP server it sends only the unauthenticated discovery probe and the RFC 9728 metadata
fetches, never a credential and never a tool request; everything that carries a credential
to the MCP server (tool listing for registration, calls) goes through the proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support.admin import admin_client, agent
from support.connectors import Idp, connect_and_expose, credential, idp
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e

_CONNECTORS_UA = "Warden-Connectors"


@pytest.fixture(scope="module")
async def env(stack: Stack) -> AsyncIterator[Idp]:
    async with idp(stack) as e:
        yield e


async def test_connectors_reaches_the_mcp_server_only_unauthenticated_for_discovery(stack: Stack, env: Idp) -> None:
    async with admin_client(stack) as admin:
        name, key = await connect_and_expose(stack, admin, env, "uma")  # discovery, consent, registration
        async with agent(stack, key) as client:
            assert not (await client.call_tool(f"{name}__whoami", {})).is_error
        await credential(stack, name, force=True)  # a refresh: token endpoint only
        await admin.req("POST", "connectors", f"/v1/connectors/{name}/disconnect")  # revocation

    from_connectors = [r for r in env.mcp.requests if r[2].startswith(_CONNECTORS_UA)]
    others = [r for r in env.mcp.requests if not r[2].startswith(_CONNECTORS_UA)]
    assert from_connectors, "discovery did not probe the MCP server"
    # connectors: the probe (POST of the MCP URL) and well-known metadata, never with a credential
    assert all(not authorized for _m, _p, _ua, authorized in from_connectors)
    assert {(m, p) for m, p, _ua, _a in from_connectors} <= {
        ("POST", "/mcp"),
        ("GET", "/.well-known/oauth-protected-resource/mcp"),
        ("GET", "/.well-known/oauth-protected-resource"),
    }
    assert sum(1 for m, _p, _ua, _a in from_connectors if m == "POST") == 1  # one probe per discovery
    # everything with a credential came from the proxy
    assert any(authorized for *_rest, authorized in others)
    assert all(ua == "warden-proxy" or ua.startswith("python-httpx") for _m, _p, ua, a in others if a)
