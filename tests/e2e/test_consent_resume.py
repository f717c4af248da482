"""The proxy's consent-and-resume, end to end: a per-user OAuth connector, an agent acting for
alice who has not connected yet. The call shows her the consent URL (URL elicitation, or a
progress message), waits while she consents at the real provider, and returns the upstream's
answer made with her token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.admin import admin_client, agent
from support.consent import (
    ElicitedConsents,
    complete_consent,
    jwt_claims,
    open_tokens,
    per_user_tool,
    protected_upstream,
)
from support.protected_mcp import ProtectedMcp
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def upstream(stack: Stack) -> AsyncIterator[ProtectedMcp]:
    async with protected_upstream(stack) as mcp:
        yield mcp


async def test_url_elicitation_consent_then_the_original_call_returns(stack: Stack, upstream: ProtectedMcp) -> None:
    async with admin_client(stack) as admin:
        name, key = await per_user_tool(stack, admin, upstream, "alice", "pu")
        alice = ElicitedConsents(stack, "alice")  # she opens the link while the agent's call waits
        # a 2025-11-25 session (initialize handshake): server-to-client requests ride its stream
        async with agent(stack, key, elicitation_callback=alice, mode="legacy") as client, asyncio.timeout(90):
            result = await client.call_tool(f"{name}__whoami", {})
        assert not result.is_error, result
        assert result.content[0].text == "alice"  # type: ignore[union-attr]
        assert len(alice.shown) == 1 and alice.shown[0].startswith(f"{stack.urls['connectors']}/connect/start/")
        page = await alice.pages[0]
        assert page.status_code == 200 and page.json()["user"] == "alice"
        tokens = await open_tokens(stack, name, "alice")
        assert tokens is not None and jwt_claims(tokens["access_token"])["sub"] == "alice"
        assert upstream.verifier.seen[-1] == "alice"
        # the admin's own connection was never used for alice's call
        admin_tokens = await open_tokens(stack, name, "")
        assert admin_tokens is not None and jwt_claims(admin_tokens["access_token"])["sub"] == "the-admin"


async def test_progress_message_consent_then_the_original_call_returns(stack: Stack, upstream: ProtectedMcp) -> None:
    async with admin_client(stack) as admin:
        name, key = await per_user_tool(stack, admin, upstream, "bruno", "pu")
        consents: list[asyncio.Task[Any]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            if message and "http" in message and not consents:
                url = message[message.index("http") :].split()[0]
                consents.append(asyncio.create_task(complete_consent(stack, url, "bruno")))

        async with agent(stack, key, mode="legacy") as client, asyncio.timeout(90):
            result = await client.call_tool(f"{name}__whoami", {}, progress_callback=on_progress)
        assert not result.is_error, result
        assert result.content[0].text == "bruno"  # type: ignore[union-attr]
        assert consents and (await consents[0]).status_code == 200


async def test_a_client_that_can_show_nothing_gets_the_consent_url_in_the_result(
    stack: Stack, upstream: ProtectedMcp
) -> None:
    async with admin_client(stack) as admin:
        name, key = await per_user_tool(stack, admin, upstream, "cyd", "pu")
        async with agent(stack, key) as client:
            result = await client.call_tool(f"{name}__whoami", {})
        text = result.content[0].text  # type: ignore[union-attr]
        assert result.is_error and f"{stack.urls['connectors']}/connect/start/" in text and "connect" in text.lower()


async def test_a_call_without_an_end_user_never_runs_on_the_admins_connection(
    stack: Stack, upstream: ProtectedMcp
) -> None:
    async with admin_client(stack) as admin:
        name, _ = await per_user_tool(stack, admin, upstream, "dora", "pu")
        profile = await admin.profile([f"{name}__whoami"])
        userless = await admin.key(profile)  # an agent key that acts for nobody
        async with agent(stack, userless) as client:
            r = await client.call_tool(f"{name}__whoami", {})
        text = " ".join(getattr(c, "text", "") for c in r.content)
        assert r.is_error and "per-user" in text and "the-admin" not in text


async def test_a_refused_consent_ends_the_waiting_call_at_once_with_the_reason(
    stack: Stack, upstream: ProtectedMcp
) -> None:
    async with admin_client(stack) as admin:
        name, key = await per_user_tool(stack, admin, upstream, "fay", "pu")
        fay = ElicitedConsents(stack, "deny")  # fay opens the link and refuses at the provider
        # the proxy would wait 120 s for a consent; a refused one ends the call as soon as it is known
        async with agent(stack, key, elicitation_callback=fay, mode="legacy") as client, asyncio.timeout(60):
            result = await client.call_tool(f"{name}__whoami", {})
        text = " ".join(getattr(c, "text", "") for c in result.content)
        assert result.is_error and "failed" in text and "denied" in text, text
        assert (await fay.pages[0]).status_code >= 400
