"""An admin sees every user's connection to a per-user connector, and which upstream account
each one links (issue 16, items 10d and 10h): `GET /v1/connectors/{name}/connections` (never a
token), the `account` in the connection view, and in the `connector.connected` audit event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support.admin import admin_client
from support.consent import complete_consent, open_tokens, per_user_connector, protected_upstream
from support.infra import wait_for
from support.protected_mcp import ProtectedMcp
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def upstream(stack: Stack) -> AsyncIterator[ProtectedMcp]:
    async with protected_upstream(stack) as mcp:
        yield mcp


async def test_an_admin_lists_each_users_connection_with_the_upstream_account_it_links(
    stack: Stack, upstream: ProtectedMcp
) -> None:
    async with admin_client(stack) as admin:
        name = await per_user_connector(stack, admin, upstream, "ac")
        started = await admin.req("POST", "connectors", f"/v1/connectors/{name}/connections/kim/consent")
        assert (await complete_consent(stack, started["consent_url"], "kim")).status_code == 200
        await admin.req("POST", "connectors", f"/v1/connectors/{name}/connections/lou/consent")  # not finished

        listing = await admin.req("GET", "connectors", f"/v1/connectors/{name}/connections")
        by_user = {c["user"]: c for c in listing["connections"]}
        assert set(by_user) == {"kim", "lou"}  # the admin's own (organization) connection is not a user's
        assert by_user["kim"]["status"] == "connected" and by_user["kim"]["account"] == "kim"
        assert by_user["lou"]["status"] == "verifying" and "account" not in by_user["lou"]
        tokens = await open_tokens(stack, name, "kim")
        assert tokens is not None and tokens["access_token"] not in admin.responses[-1]
        one = await admin.req("GET", "connectors", f"/v1/connectors/{name}/connections/kim")
        assert one["account"] == "kim"

        # the audit event of the connection names the account too
        async def connected_event() -> dict[str, Any] | None:
            page = await admin.req(
                "GET", "audit", "/v1/events", params={"connector": name, "type": "connector.connected"}
            )
            return next((ev for ev in page["items"] if ev["refs"].get("user") == "kim"), None)

        ev = await wait_for(connected_event, timeout=30)
        assert ev["data"]["account"] == "kim"

        # an organization-wide connector has no per-user connections to list
        org = await admin.connector(upstream.url, "x")
        r = await admin.http.get(f"{stack.urls['connectors']}/v1/connectors/{org}/connections")
        assert r.status_code == 400 and "organization-wide" in r.text


async def test_listing_connections_needs_the_admin_token(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=30, trust_env=False) as anon:
        r = await anon.get(f"{stack.urls['connectors']}/v1/connectors/any/connections")
    assert r.status_code == 401


async def test_warden_calls_keys_shows_the_user_each_key_acts_for(stack: Stack) -> None:
    from typer.testing import CliRunner
    from warden_proxy.cli import app

    async with admin_client(stack) as admin:
        profile = await admin.profile([])
        mine = await admin.req("POST", "proxy", "/v1/agent-keys", json={"name": "m", "profile": profile, "user": "mo"})
        nobodys = await admin.req("POST", "proxy", "/v1/agent-keys", json={"name": "n", "profile": profile})
    args = ["keys", "--url", stack.urls["proxy"], "--token", stack.admin_token]
    res = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert res.exit_code == 0, res.output
    lines = {line.split()[0]: line for line in res.output.splitlines() if line.strip()}
    assert "user mo " in lines[mine["prefix"]]
    assert "user - " in lines[nobodys["prefix"]]
