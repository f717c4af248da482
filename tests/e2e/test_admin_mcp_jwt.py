"""An OIDC admin at /mcp/admin: with WARDEN_PROXY_JWT_ISSUER set, a JWT from that issuer (a real
oidc-provider) carrying the `warden:admin` scope manages Warden, and its actions are audited as
that user; the same issuer's token without the scope gets 401."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from support.admin import admin_client
from support.infra import isolated_stack, wait_for
from support.oauth import REDIRECT_URI, follow_consent, registered_clients
from support.oidc import OidcProvider, oidc_provider
from warden_cli.embedded import Stack
from warden_connectors.oauth.pkce import challenge_s256, new_verifier

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def env(
    nats_url: str, admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Stack, OidcProvider]]:
    async with oidc_provider(clients=registered_clients()) as op:
        proxy = {"WARDEN_PROXY_JWT_ISSUER": op.issuer}
        data = Path(tmp_path_factory.mktemp("warden-admin-jwt"))
        async with isolated_stack(nats_url, admin_dsn, data, {"proxy": proxy}) as stack:
            yield stack, op


async def _token(op: OidcProvider, user: str, resource: str, scope: str) -> str:
    verifier = new_verifier()
    query = {
        "response_type": "code",
        "client_id": "reg-public",
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "resource": resource,
        "code_challenge": challenge_s256(verifier),
        "code_challenge_method": "S256",
        "state": secrets.token_urlsafe(8),
        "login_hint": user,
    }
    params = await follow_consent(f"{op.issuer}/auth?{urlencode(query)}")
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        r = await http.post(
            f"{op.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": REDIRECT_URI,
                "client_id": "reg-public",
                "code_verifier": verifier,
                "resource": resource,
            },
        )
    r.raise_for_status()
    return str(r.json()["access_token"])


async def test_an_admin_scoped_jwt_manages_warden_as_its_user(env: tuple[Stack, OidcProvider]) -> None:
    stack, op = env
    token = await _token(op, "alice", f"{stack.urls['proxy']}/mcp", "openid warden:admin")
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    profile = "p" + secrets.token_hex(4)
    try:
        async with Client(streamable_http_client(f"{stack.urls['proxy']}/mcp/admin", http_client=http)) as admin:
            r = await admin.call_tool("create_profile", {"name": profile, "description": "by alice"})
            assert not r.is_error, r.content
            listed = await admin.call_tool("list_profiles", {})
            assert profile in {p["name"] for p in (listed.structured_content or {})["profiles"]}
    finally:
        await http.aclose()
    async with admin_client(stack) as http_admin:

        async def audited() -> Any:
            page = await http_admin.req("GET", "audit", "/v1/events", params={"type": "profile.*", "profile": profile})
            return [e for e in page["items"] if e["actor"] == {"kind": "admin", "id": "alice"}]

        assert await wait_for(audited, timeout=15)


async def test_a_jwt_without_the_admin_scope_is_refused(env: tuple[Stack, OidcProvider]) -> None:
    stack, op = env
    token = await _token(op, "bob", f"{stack.urls['proxy']}/mcp", "openid mcp:tools")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
    }
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{stack.urls['proxy']}/mcp/admin", json=body, headers=headers)
    assert r.status_code == 401 and "warden:admin" in r.json()["error_description"]
