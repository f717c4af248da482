"""Scope step-up, end to end: a real OAuth server (oidc-provider), a protected MCP server whose
`admin_echo` tool needs `mcp:admin` on top of `mcp:tools` and answers `403 insufficient_scope`
with a scope challenge. Warden must re-consent asking for the union of scopes:

- a per-user connection: the call shows the user a consent URL for the union, waits while she
  consents at the provider, then finishes the call with the new token;
- the organization's connection: the call is refused with `reauth_required` naming the scopes,
  the connector needs attention, and the admin's next authorization asks for the union.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest
from support.admin import Admin, admin_client, agent
from support.consent import ElicitedConsents, authorize_url, callback_url, complete_consent, jwt_claims, open_tokens
from support.infra import wait_for
from support.oauth import registered_clients
from support.oidc import oidc_provider
from support.protected_mcp import ProtectedMcp, protected_mcp
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def upstream(stack: Stack) -> AsyncIterator[ProtectedMcp]:
    async with (
        oidc_provider(clients=registered_clients(callback_url(stack))) as op,
        protected_mcp(op.issuer, tool_scopes={"admin_echo": "mcp:admin"}) as mcp,
    ):
        yield mcp


async def _scopes(consent_url: str) -> set[str]:
    url = await authorize_url(consent_url)  # a person's consent URL is Warden's start URL
    return set(parse_qs(urlsplit(url).query)["scope"][0].split())


async def _connector(stack: Stack, admin: Admin, upstream: ProtectedMcp, scope: str) -> str:
    name = "su" + secrets.token_hex(4)
    view = await admin.req(
        "POST",
        "connectors",
        "/v1/connectors?authorize=true",
        json={"name": name, "url": upstream.url, "scope": scope, "auth": {"type": "oauth2"}},
    )
    assert "mcp:admin" not in await _scopes(
        view["consent_url"]
    )  # the first consent asks for what the server advertises
    assert (await complete_consent(stack, view["consent_url"], "the-admin")).status_code == 200
    await admin.register(name, [{"name": "admin_echo"}, {"name": "echo"}])
    return name


async def test_per_user_step_up_consents_to_the_union_and_resumes_the_call(
    stack: Stack, upstream: ProtectedMcp
) -> None:
    async with admin_client(stack) as admin:
        name = await _connector(stack, admin, upstream, "per_user")
        profile = await admin.profile([f"{name}__admin_echo", f"{name}__echo"])
        key = await admin.req("POST", "proxy", "/v1/agent-keys", json={"name": "t", "profile": profile, "user": "erin"})
        erin = ElicitedConsents(stack, "erin")
        async with agent(stack, str(key["key"]), elicitation_callback=erin, mode="legacy") as client:
            async with asyncio.timeout(120):
                # first erin's own connection (a plain consent), then the tool that needs more
                r = await client.call_tool(f"{name}__echo", {"text": "hi"})
                assert not r.is_error, r
                assert len(erin.shown) == 1 and "mcp:admin" not in await _scopes(erin.shown[0])
                await erin.pages[0]
                r = await client.call_tool(f"{name}__admin_echo", {"text": "hi"})
        assert not r.is_error, r
        assert r.content[0].text == "admin: hi"  # type: ignore[union-attr]
        # the second consent asked for the union of what erin held and what the server required
        assert len(erin.shown) == 2, erin.shown
        assert {"mcp:tools", "mcp:admin"} <= await _scopes(erin.shown[1])
        assert (await erin.pages[1]).status_code == 200
        tokens = await open_tokens(stack, name, "erin")
        assert tokens is not None
        claims = jwt_claims(tokens["access_token"])
        assert claims["sub"] == "erin" and {"mcp:tools", "mcp:admin"} <= set(claims["scope"].split())
        # the organization's connection was left alone
        org = await open_tokens(stack, name, "")
        assert org is not None and "mcp:admin" not in jwt_claims(org["access_token"])["scope"].split()


async def test_organization_step_up_needs_the_admin_and_the_next_consent_asks_for_the_union(
    stack: Stack, upstream: ProtectedMcp
) -> None:
    async with admin_client(stack) as admin:
        name = await _connector(stack, admin, upstream, "organization")
        profile = await admin.profile([f"{name}__admin_echo", f"{name}__echo"])
        key = await admin.key(profile)
        async with agent(stack, key) as client:
            ok = await client.call_tool(f"{name}__echo", {"text": "hi"})
            assert not ok.is_error, ok
            refused = await client.call_tool(f"{name}__admin_echo", {"text": "hi"})
        text = " ".join(getattr(c, "text", "") for c in refused.content)
        assert refused.is_error and "mcp:admin" in text and "authorize" in text, text

        view = await admin.req("GET", "connectors", f"/v1/connectors/{name}")
        assert view["status"] == "active"  # tools that need nothing more keep working
        assert any("mcp:admin" in w for w in view["warnings"]), view["warnings"]
        attention = await admin.req("GET", "connectors", "/v1/connectors?status=needs_attention")
        assert name in [c["name"] for c in attention]

        started = await admin.req("POST", "connectors", f"/v1/connectors/{name}/authorize")
        assert {"mcp:tools", "mcp:admin"} <= await _scopes(started["consent_url"])
        assert (await complete_consent(stack, started["consent_url"], "the-admin")).status_code == 200

        view = await admin.req("GET", "connectors", f"/v1/connectors/{name}")
        assert not any("mcp:admin" in w for w in view["warnings"])
        async with agent(stack, key) as client, asyncio.timeout(60):
            r = await client.call_tool(f"{name}__admin_echo", {"text": "hi"})
        assert not r.is_error, r
        assert r.content[0].text == "admin: hi"  # type: ignore[union-attr]

        async def audited() -> bool:
            page = await admin.req(
                "GET", "audit", "/v1/events", params={"type": "connector.step_up_required", "connector": name}
            )
            return bool(page["items"]) and page["items"][0]["data"]["missing"] == ["mcp:admin"]

        assert await wait_for(audited, timeout=10)
