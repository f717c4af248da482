"""End users manage their own per-user connections with their own agent key, through the
proxy's `/v1/me/connections` (never the admin token): see the status, start a consent at the
real provider, poll until connected, disconnect (tokens purged and revoked). A user never sees
or touches another user's connection; a key bound to no user is refused."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from support.admin import Admin, admin_client
from support.consent import callback_url, complete_consent, jwt_claims, open_tokens
from support.oauth import registered_clients
from support.oidc import OidcProvider, oidc_provider
from support.protected_mcp import ProtectedMcp, protected_mcp
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e
ME = "/v1/me/connections"


@pytest.fixture(scope="module")
async def env(stack: Stack) -> AsyncIterator[tuple[OidcProvider, ProtectedMcp]]:
    async with (
        oidc_provider(clients=registered_clients(callback_url(stack))) as op,
        protected_mcp(op.issuer) as mcp,
    ):
        yield op, mcp


async def _key(admin: Admin, profile: str, user: str | None) -> str:
    body = {"name": "t", "profile": profile, **({"user": user} if user else {})}
    return str((await admin.req("POST", "proxy", "/v1/agent-keys", json=body))["key"])


def _as(stack: Stack, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.urls["proxy"],
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
        trust_env=False,
    )


async def test_a_user_connects_checks_and_disconnects_their_own_connection(
    stack: Stack, env: tuple[OidcProvider, ProtectedMcp]
) -> None:
    op, mcp = env
    async with admin_client(stack) as admin:
        name = "me" + secrets.token_hex(4)
        view = await admin.req(
            "POST",
            "connectors",
            "/v1/connectors?authorize=true",
            json={"name": name, "url": mcp.url, "scope": "per_user", "auth": {"type": "oauth2"}},
        )
        # the admin's own connection serves tool discovery
        assert (await complete_consent(stack, view["consent_url"], "the-admin")).status_code == 200
        await admin.register(name, [{"name": "whoami"}])
        profile = await admin.profile([f"{name}__whoami"])
        alice, bob = await _key(admin, profile, "alice"), await _key(admin, profile, "bob")
        nobody = await _key(admin, profile, None)

    async with _as(stack, alice) as a, _as(stack, bob) as b, _as(stack, nobody) as n:
        mine = (await a.get(ME)).json()
        assert {"connector": name, "user": "alice", "status": "connection_required"}.items() <= next(
            c for c in mine["connections"] if c["connector"] == name
        ).items()

        started = (await a.post(f"{ME}/{name}/consent")).json()
        assert started["status"] == "verifying" and started["consent_url"].startswith(
            f"{stack.urls['connectors']}/connect/start/"
        )
        assert (await a.get(f"{ME}/{name}")).json()["status"] == "verifying"
        assert (await b.get(f"{ME}/{name}")).json()["status"] == "connection_required"  # bob's is his own

        page = await complete_consent(stack, started["consent_url"], "alice")
        assert page.status_code == 200
        connected = (await a.get(f"{ME}/{name}")).json()
        assert connected["status"] == "connected" and "mcp:tools" in connected["scopes"]
        assert connected["account"] == "alice"  # the upstream account the consent linked
        assert "access_token" not in str(connected) and "consent_url" not in connected
        tokens = await open_tokens(stack, name, "alice")
        assert tokens is not None and jwt_claims(tokens["access_token"])["sub"] == "alice"
        assert tokens["access_token"] not in (await a.get(ME)).text

        # bob can neither see nor end alice's connection: he only ever reaches his own
        assert (await b.get(f"{ME}/{name}")).json()["status"] == "connection_required"
        assert (await b.delete(f"{ME}/{name}")).json()["status"] == "connection_required"
        assert (await a.get(f"{ME}/{name}")).json()["status"] == "connected"

        refused = await n.get(ME)
        assert refused.status_code == 403 and "no user" in refused.json()["error"]["message"]
        async with httpx.AsyncClient(trust_env=False) as anonymous:
            assert (await anonymous.get(f"{stack.urls['proxy']}/v1/me/connections")).status_code == 401
        assert (await a.get(f"{ME}/No_Such")).status_code == 400
        assert (await a.get(f"{ME}/nosuch")).status_code == 404

        gone = (await a.delete(f"{ME}/{name}")).json()
        assert gone["status"] == "connection_required"
        assert await open_tokens(stack, name, "alice") is None
        assert (await op.introspect(tokens["refresh_token"]))["active"] is False  # revoked at the provider
