"""OAuth connectors against a real identity provider, for end-to-end tests: the provider
(oidc-provider) with an MCP server that validates its JWTs, adding a connector through the
admin API, and asking the connectors service for a credential the way the proxy does."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from warden_cli.embedded import Stack
from warden_common.contracts import CREDENTIALS_GET, Credential, CredentialRequest
from warden_common.errors import WardenError

from support.admin import Admin
from support.consent import callback_url, complete_consent, stack_bus
from support.oauth import registered_clients
from support.oidc import OidcProvider, oidc_provider
from support.protected_mcp import ProtectedMcp, protected_mcp

__all__ = ["Idp", "add_oauth", "connect_and_expose", "credential", "idp", "refusal"]


@dataclass
class Idp:
    op: OidcProvider
    mcp: ProtectedMcp


@asynccontextmanager
async def idp(stack: Stack, at_ttl: int = 3600) -> AsyncIterator[Idp]:
    async with (
        oidc_provider(at_ttl=at_ttl, clients=registered_clients(callback_url(stack))) as op,
        protected_mcp(op.issuer) as mcp,
    ):
        yield Idp(op, mcp)


async def add_oauth(admin: Admin, url: str, *, authorize: bool = True, **auth: Any) -> dict[str, Any]:
    name = "o" + secrets.token_hex(4)
    scope = auth.pop("scope", None)
    body: dict[str, Any] = {"name": name, "url": url, "auth": {"type": "oauth2", **auth}}
    if scope:
        body["scope"] = scope
    q = "?authorize=true" if authorize else ""
    return dict(await admin.req("POST", "connectors", f"/v1/connectors{q}", json=body, expect=201))


async def credential(stack: Stack, connector: str, user: str | None = None, force: bool = False) -> Credential:
    async with stack_bus(stack) as bus:
        return await bus.request(
            CREDENTIALS_GET, CredentialRequest(connector=connector, user=user, force_refresh=force)
        )


async def refusal(stack: Stack, connector: str, user: str | None = None) -> WardenError:
    with pytest.raises(WardenError) as ei:
        await credential(stack, connector, user)
    return ei.value


async def connect_and_expose(stack: Stack, admin: Admin, env: Idp, login: str, **auth: Any) -> tuple[str, str]:
    """add & authorize -> consent in the browser -> tools registered -> an agent key."""
    view = await add_oauth(admin, env.mcp.url, **auth)
    page = await complete_consent(stack, view["consent_url"], login)
    assert page.status_code == 200, page.text
    name = view["name"]
    await admin.register(name, [{"name": "whoami"}, {"name": "echo"}])
    key = await admin.key(await admin.profile([f"{name}__*"]))
    return name, key
