"""Callers with a bearer JWT from a configured issuer (a real OIDC provider, oidc-provider),
instead of an agent key: the proxy verifies the signature against the issuer's JWKS and the
claims (issuer, audience = the MCP endpoint, expiry, user); the caller acts as that user with the
configured profile. Tokens for another audience, tampered or malformed ones get 401, and the
RFC 9728 metadata names the issuer so MCP clients know where to get a token."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from support.admin import admin_client, agent
from support.infra import isolated_stack, wait_for
from support.oauth import REDIRECT_URI, follow_consent, registered_clients
from support.oidc import OidcProvider, oidc_provider
from support.upstream import bearer_upstream
from warden_cli.embedded import Stack
from warden_connectors.oauth.pkce import challenge_s256, new_verifier

pytestmark = pytest.mark.e2e

PROFILE = "jwt-callers"


@pytest.fixture(scope="module")
async def env(
    nats_url: str, admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Stack, OidcProvider]]:
    async with oidc_provider(clients=registered_clients()) as op:
        proxy = {"WARDEN_PROXY_JWT_ISSUER": op.issuer, "WARDEN_PROXY_JWT_DEFAULT_PROFILE": PROFILE}
        data = Path(tmp_path_factory.mktemp("warden-jwt"))
        async with isolated_stack(nats_url, admin_dsn, data, {"proxy": proxy}) as stack:
            yield stack, op


async def _token(op: OidcProvider, user: str, resource: str) -> str:
    """An RFC 9068 JWT access token for `resource`, as `user` would get it (code + PKCE)."""
    verifier = new_verifier()
    query = {
        "response_type": "code",
        "client_id": "reg-public",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid mcp:tools",
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


def _claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]


async def test_a_jwt_from_the_issuer_calls_tools_as_its_user(env: tuple[Stack, OidcProvider]) -> None:
    stack, op = env
    resource = f"{stack.urls['proxy']}/mcp"
    async with bearer_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c)
        await admin.profile([f"{c}__echo"], name=PROFILE)
        token = await _token(op, "zoe", resource)
        assert _claims(token)["aud"] == resource and _claims(token)["sub"] == "zoe"
        async with agent(stack, token) as client:
            assert [t.name for t in (await client.list_tools()).tools] == [f"{c}__echo"]
            r = await client.call_tool(f"{c}__echo", {"text": "hi"})
        assert not r.is_error, r

        async def audited() -> bool:
            page = await admin.req(
                "GET", "audit", "/v1/events", params={"type": "call.completed", "tool": f"{c}__echo"}
            )
            return any(e["actor"] == {"kind": "user", "id": "jwt:zoe"} for e in page["items"])

        assert await wait_for(audited, timeout=10)
        assert token not in json.dumps(admin.responses)


async def test_wrong_audience_tampered_and_malformed_tokens_are_refused(env: tuple[Stack, OidcProvider]) -> None:
    stack, op = env
    mcp = f"{stack.urls['proxy']}/mcp"
    other = await _token(op, "zoe", "http://127.0.0.1:9/another-resource")
    good = await _token(op, "zoe", mcp)
    head, body, sig = good.split(".")
    forged_body = base64.urlsafe_b64encode(json.dumps({**_claims(good), "sub": "admin"}).encode()).rstrip(b"=")
    cases = {
        "wrong audience": other,
        "tampered": f"{head}.{forged_body.decode()}.{sig}",
        "malformed": "not-a-jwt",
    }
    body_json = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        for why, token in cases.items():
            r = await http.post(
                mcp,
                json=body_json,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
            )
            assert r.status_code == 401, (why, r.status_code, r.text)
            assert token not in r.text
        prm = (await http.get(f"{stack.urls['proxy']}/.well-known/oauth-protected-resource/mcp")).json()
    assert prm["authorization_servers"] == [op.issuer] and prm["resource"] == mcp
