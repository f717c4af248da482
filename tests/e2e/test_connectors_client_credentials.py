"""Machine-to-machine OAuth (client credentials, MCP SEP-1046) against a real authorization
server (oidc-provider) and a protected MCP server that verifies its JWTs: Warden is the client's
only user, so "authorize" obtains the token at once, with `client_secret_basic` or with
`private_key_jwt` (RFC 7523, an ES256 assertion); a token near expiry is simply asked for again;
the client's secret and private key never show."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey
from support.admin import Admin, admin_client, agent
from support.oidc import OidcProvider, oidc_provider
from support.protected_mcp import ProtectedMcp, protected_mcp
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e

SECRET = "m2m-basic-secret-0123456789abcdef"
AT_TTL = 8  # seconds: short, so re-obtaining near expiry is exercised


def _keypair() -> tuple[str, dict[str, Any]]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = ECKey.import_key(pem).as_dict(private=False)
    return pem, {**public, "kid": "m2m-1", "alg": "ES256", "use": "sig"}


PEM, JWK = _keypair()
M2M = {"grant_types": ["client_credentials"], "redirect_uris": [], "response_types": []}
CLIENTS = [
    {**M2M, "client_id": "m2m-basic", "client_secret": SECRET, "token_endpoint_auth_method": "client_secret_basic"},
    {
        **M2M,
        "client_id": "m2m-jwt",
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "ES256",
        "jwks": {"keys": [JWK]},
    },
]


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[tuple[OidcProvider, ProtectedMcp]]:
    async with oidc_provider(at_ttl=AT_TTL, clients=CLIENTS) as op, protected_mcp(op.issuer) as mcp:
        yield op, mcp


async def _cc_requests(op: OidcProvider, client_id: str) -> int:
    return int((await op.stats())["by_client"].get(client_id, {}).get("client_credentials", 0))


async def _add(admin: Admin, mcp: ProtectedMcp, auth: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = "cc" + secrets.token_hex(4)
    body = {"name": name, "url": mcp.url, "auth": {"type": "oauth2", "grant_type": "client_credentials", **auth}}
    view = await admin.req("POST", "connectors", "/v1/connectors?authorize=true", json=body)
    return name, view


@pytest.mark.parametrize(
    ("client_id", "auth"),
    [
        (
            "m2m-basic",
            {"client_id": "m2m-basic", "client_secret": SECRET, "token_endpoint_auth_method": "client_secret_basic"},
        ),
        ("m2m-jwt", {"client_id": "m2m-jwt", "private_key": PEM, "signing_alg": "ES256"}),
    ],
)
async def test_client_credentials_connect_at_once_and_calls_carry_the_clients_token(
    stack: Stack, env: tuple[OidcProvider, ProtectedMcp], client_id: str, auth: dict[str, Any]
) -> None:
    op, mcp = env
    async with admin_client(stack) as admin:
        before = await _cc_requests(op, client_id)
        name, view = await _add(admin, mcp, auth)
        assert view["consent_url"] is None and view["connected"] is True
        shown = await admin.req("GET", "connectors", f"/v1/connectors/{name}")
        assert shown["status"] == "active"
        assert shown["oauth"]["grant_type"] == "client_credentials" and shown["oauth"]["client_id"] == client_id
        for leaked in (SECRET, PEM.splitlines()[1]):
            assert leaked not in str(shown) and leaked not in str(
                await admin.req("GET", "connectors", f"/v1/connectors/{name}/json")
            )
        assert await _cc_requests(op, client_id) == before + 1

        await admin.register(name, [{"name": "whoami"}])
        key = await admin.key(await admin.profile([f"{name}__whoami"]))
        async with agent(stack, key) as client:
            r = await client.call_tool(f"{name}__whoami", {})
            assert not r.is_error, r
            assert r.content[0].text == client_id  # type: ignore[union-attr]  # the token's subject: the client
            # near expiry the token is simply asked for again (no refresh token, no consent)
            await asyncio.sleep(AT_TTL)
            r = await client.call_tool(f"{name}__whoami", {})
            assert not r.is_error, r
        assert await _cc_requests(op, client_id) >= before + 2


async def test_client_credentials_are_refused_for_per_user_connectors_and_without_a_client(
    stack: Stack, env: tuple[OidcProvider, ProtectedMcp]
) -> None:
    _, mcp = env
    async with admin_client(stack) as admin:
        base = {"url": mcp.url, "scope": "per_user"}
        auth = {"type": "oauth2", "grant_type": "client_credentials", "client_id": "m2m-basic", "client_secret": SECRET}
        r = await admin.http.post(
            f"{stack.urls['connectors']}/v1/connectors",
            json={**base, "name": "ccpu" + secrets.token_hex(3), "auth": auth},
        )
        assert r.status_code == 400 and "authorization_code" in r.text and SECRET not in r.text
        no_client = {"type": "oauth2", "grant_type": "client_credentials"}
        r = await admin.http.post(
            f"{stack.urls['connectors']}/v1/connectors",
            json={"url": mcp.url, "name": "ccnc" + secrets.token_hex(3), "auth": no_client},
        )
        assert r.status_code in (400, 422) and "client_id" in r.text
