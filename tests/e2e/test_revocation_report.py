"""Revocation is reported per token, against the real oidc-provider: it revokes the refresh
token but answers `unsupported_token_type` for its JWT access tokens, so the answer, the event
and the CLI say the access token was not revoked and until when it stays valid."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from support.admin import Admin, admin_client
from support.connectors import Idp, connect_and_expose, idp
from support.consent import complete_consent, open_tokens
from support.infra import wait_for
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def env(stack: Stack) -> AsyncIterator[Idp]:
    async with idp(stack) as e:
        yield e


async def _events(admin: Admin, **params: str) -> list[dict[str, Any]]:
    return list((await admin.req("GET", "audit", "/v1/events", params=params))["items"])


def _expiry(tokens: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(tokens["expires_at"]))


def _assert_partial(report: dict[str, Any], valid_until: datetime) -> None:
    assert report["refresh"] == {"revoked": 1}
    assert report["access"] == {"not_revocable": 1}
    assert report["complete"] is False
    assert datetime.fromisoformat(report["access_valid_until"]) == valid_until
    assert valid_until > datetime.now(UTC)


async def test_disconnect_says_the_jwt_access_token_was_not_revoked_and_until_when_it_works(
    stack: Stack, env: Idp
) -> None:
    async with admin_client(stack) as admin:
        name, _ = await connect_and_expose(stack, admin, env, "rita")
        tokens = await open_tokens(stack, name)
        assert tokens is not None
        view = await admin.req("POST", "connectors", f"/v1/connectors/{name}/disconnect")
        assert view["status"] == "disconnected"
        _assert_partial(view["revocation"], _expiry(tokens))
        assert (await env.op.introspect(tokens["refresh_token"]))["active"] is False
        # the upstream still accepts the access token (a JWT): the report tells the truth
        async with httpx.AsyncClient(timeout=10) as h:
            r = await h.post(
                env.mcp.url,
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {},
                        "clientInfo": {"name": "t", "version": "1"},
                    },
                },
                headers={
                    "Authorization": f"Bearer {tokens['access_token']}",
                    "Accept": "application/json, text/event-stream",
                },
            )
        assert r.status_code == 200, r.text

        async def disconnected() -> list[dict[str, Any]]:
            return await _events(admin, type="connector.disconnected", connector=name)

        events = await wait_for(disconnected, timeout=15)
        assert events
        _assert_partial(events[0]["data"]["revocation"], _expiry(tokens))
        assert "revoked" not in events[0]["data"]  # no summary that says "revoked" for both
        text = str(events[0]) + str(view)
        assert tokens["access_token"] not in text and tokens["refresh_token"] not in text


async def test_the_cli_reports_each_token_on_disconnect_and_remove(stack: Stack, env: Idp) -> None:
    async with admin_client(stack) as admin:
        name, _ = await connect_and_expose(stack, admin, env, "sam")
        tokens = await open_tokens(stack, name)
        assert tokens is not None
        code, output = await _cli_run(stack, "disconnect", name)
        assert code == 0, output
        assert "refresh token: revoked" in output
        assert "access token: not revoked: the provider cannot revoke this kind of token" in output
        assert f"stays valid at the provider until {_expiry(tokens).isoformat()}" in output

        # reconnect, then remove: the DELETE answer carries the same report
        again = await admin.req("POST", "connectors", f"/v1/connectors/{name}/reconnect")

        assert (await complete_consent(stack, again["consent_url"], "sam")).status_code == 200
        renewed = await open_tokens(stack, name)
        assert renewed is not None
        code, output = await _cli_run(stack, "remove", name, "--confirm", name)
        assert code == 0, output
        assert f"removed {name}" in output and "access token: not revoked" in output
        assert f"until {_expiry(renewed).isoformat()}" in output
        assert renewed["access_token"] not in output and tokens["access_token"] not in output

        async def removed() -> list[dict[str, Any]]:
            return await _events(admin, type="connector.removed", connector=name)

        events = await wait_for(removed, timeout=15)
        assert events
        _assert_partial(events[0]["data"]["revocation"], _expiry(renewed))


async def _cli_run(stack: Stack, *args: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "WARDEN_CONNECTORS_URL": stack.urls["connectors"],
        "WARDEN_ADMIN_TOKEN": stack.admin_token,
        "COLUMNS": "300",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "warden_connectors.cli",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        so, se = await proc.communicate()
    return proc.returncode or 0, so.decode() + se.decode()
