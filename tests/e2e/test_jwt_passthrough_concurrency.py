"""jwt_passthrough under concurrency (issue 16, item 10e): twenty end users, each with their
own site token, call one connector at once through one agent key, over MCP and over HTTP;
every call answers, each on its own user's JWT. Real MCP upstream, real stack."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import httpx2
import pytest
from joserfc import jwe, jwt
from joserfc.jwe import JWERegistry
from joserfc.jwk import RSAKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from support.admin import Admin, admin_client
from support.upstream import serve_asgi
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


def site_token(site: RSAKey, warden_jwk: dict, sub: str, alg: str = "RSA-OAEP-256") -> str:
    inner = jwt.encode({"alg": "RS256"}, {"sub": sub, "aud": "warden-test", "exp": int(time.time()) + 300}, site)
    return jwe.encrypt_compact(
        {"alg": alg, "enc": "A256GCM", "cty": "JWT"},
        inner.encode(),
        RSAKey.import_key(warden_jwk),
        registry=JWERegistry(algorithms=[alg, "A256GCM"]),
    )


@asynccontextmanager
async def whoami_upstream() -> AsyncIterator[str]:
    """A real MCP server whose tool answers, a little later, with the JWT the request carried
    (and refuses a request with none)."""
    srv = MCPServer("site-upstream")

    @srv.tool()
    async def whoami(ctx: Context) -> str:
        """Who the upstream was called as."""
        await asyncio.sleep(0.3)
        auth = str((ctx.headers or {}).get("authorization", ""))
        if not auth.startswith("Bearer ey"):
            raise ValueError("no site JWT")
        claims = jwt.decode(auth[7:], SITE).claims
        return str(claims["sub"])

    async with serve_asgi(srv.streamable_http_app()) as port:
        yield f"http://127.0.0.1:{port}/mcp"


SITE = RSAKey.generate_key(2048)


async def passthrough_connector(admin: Admin, url: str) -> tuple[str, dict]:
    c = await admin.connector(url, None)
    await admin.register(c, [{"name": "whoami"}])
    view = await admin.req(
        "PATCH",
        "connectors",
        f"/v1/connectors/{c}",
        json={
            "auth": {
                "type": "jwt_passthrough",
                "audience": "warden-test",
                "site_public_jwk": SITE.as_dict(private=False),
                "headers": {"Authorization": "Bearer %{jwt_token}"},
            }
        },
    )
    return c, view["auth_config"]["warden_public_jwk"]


async def test_twenty_users_with_their_own_site_tokens_all_get_answers_over_mcp_and_http(stack: Stack) -> None:
    async with whoami_upstream() as url, admin_client(stack) as admin:
        c, warden_jwk = await passthrough_connector(admin, url)
        key = await admin.key(await admin.profile([f"{c}__*"]))
        users = [f"user{i}" for i in range(20)]
        tokens = {u: site_token(SITE, warden_jwk, u) for u in users}

        async def over_http(u: str) -> str:
            async with httpx.AsyncClient(timeout=60) as h:
                r = await h.post(
                    f"{stack.urls['proxy']}/v1/tools/{c}__whoami/call",
                    json={"arguments": {}},
                    headers={"Authorization": f"Bearer {key}", "X-Warden-JWE": tokens[u]},
                )
            assert r.status_code == 200, r.text
            body = r.json()
            assert not body.get("is_error"), body
            return str(body["content"][0]["text"])

        async def over_mcp(u: str) -> str:
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}", "X-Warden-JWE": tokens[u]}, timeout=60)
            try:
                async with Client(streamable_http_client(f"{stack.urls['proxy']}/mcp", http_client=http)) as client:
                    r = await client.call_tool(f"{c}__whoami", {})
                    assert not r.is_error, r
                    return str(r.content[0].text)  # type: ignore[union-attr]
            finally:
                await http.aclose()

        for how in (over_http, over_mcp):
            answers = await asyncio.gather(*(how(u) for u in users), return_exceptions=True)
            assert answers == users, f"{how.__name__}: {answers}"


async def test_the_admin_discovers_and_registers_a_passthrough_connector_with_a_site_token(stack: Stack) -> None:
    """Issue 16, item 10f: discovery and registration of a jwt_passthrough connector take a site
    token (X-Warden-JWE) the admin supplies; RSA-OAEP is accepted; a wrong algorithm is named."""
    import base64
    import json
    import secrets

    async with whoami_upstream() as url, admin_client(stack) as admin:
        c = "c" + secrets.token_hex(4)
        view = await admin.req(
            "POST",
            "connectors",
            "/v1/connectors",
            json={
                "name": c,
                "url": url,
                "auth": {
                    "type": "jwt_passthrough",
                    "audience": "warden-test",
                    "site_public_jwk": SITE.as_dict(private=False),
                    "headers": {"Authorization": "Bearer %{jwt_token}"},
                },
            },
        )
        warden_jwk = view["auth_config"]["warden_public_jwk"]
        path = f"/v1/connectors/{c}"
        r = await admin.http.post(f"{stack.urls['registry']}{path}/discover")
        assert r.status_code == 401 and "X-Warden-JWE" in r.text, r.text

        token = site_token(SITE, warden_jwk, "admin-alice", alg="RSA-OAEP")  # what the seed's sites use
        found = await admin.req("POST", "registry", f"{path}/discover", headers={"X-Warden-JWE": token})
        assert [t["name"] for t in found["tools"]] == ["whoami"]
        out = await admin.req("POST", "registry", f"{path}/tools", json={}, headers={"X-Warden-JWE": token})
        assert out["registered"] == [f"{c}__whoami"]
        assert token not in "".join(admin.responses)

        # a token with an algorithm the connector does not take: the algorithm is named
        header = base64.urlsafe_b64encode(json.dumps({"alg": "ECDH-ES", "enc": "A256GCM"}).encode()).rstrip(b"=")
        wrong = header.decode() + token[token.index(".") :]
        r = await admin.http.post(f"{stack.urls['registry']}{path}/discover", headers={"X-Warden-JWE": wrong})
        assert r.status_code == 401 and "ECDH-ES" in r.text and "RSA-OAEP" in r.text, r.text

        # and agents' calls work with RSA-OAEP tokens too
        key = await admin.key(await admin.profile([f"{c}__*"]))
        async with httpx.AsyncClient(timeout=60) as h:
            called = await h.post(
                f"{stack.urls['proxy']}/v1/tools/{c}__whoami/call",
                json={"arguments": {}},
                headers={"Authorization": f"Bearer {key}", "X-Warden-JWE": token},
            )
        assert called.status_code == 200 and called.json()["content"][0]["text"] == "admin-alice", called.text
