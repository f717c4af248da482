"""Consent-and-resume over every channel a client offers (issue 16, items 10b and 10c):

- a 2025-11-25 session that declares URL elicitation but never opens the GET stream gets the
  elicitation on its call's own POST stream, and `notifications/elicitation/complete` when
  the consent lands;
- a 2026-07-28 client (the `mcp` client's default) with an elicitation callback gets an
  `input_required` result carrying the URL elicitation, opens it, retries, and the retry
  finishes with the user's answer;
- a 2026-07-28 client with only a progress callback sees the URL in a progress message at once;
- when nobody consents, the answer says the wait timed out and after how long.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from support.admin import admin_client
from support.consent import ElicitedConsents, callback_url, complete_consent, per_user_tool, protected_upstream
from support.infra import isolated_stack
from support.oauth import registered_clients
from support.oidc import oidc_provider
from support.protected_mcp import ProtectedMcp, protected_mcp
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def upstream(stack: Stack) -> AsyncIterator[ProtectedMcp]:
    async with protected_upstream(stack) as mcp:
        yield mcp


class _NoGetStream(httpx2.AsyncBaseTransport):
    """A client network that never carries the standalone GET stream (a proxy that buffers it,
    a client that does not open it): the server answers 405 as if it offered none."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.gets = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "GET":
            self.gets += 1
            return httpx2.Response(405, request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def _client(stack: Stack, key: str, transport: Any = None, **kw: Any) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120, transport=transport)
    try:
        async with Client(streamable_http_client(f"{stack.urls['proxy']}/mcp", http_client=http), **kw) as c:
            yield c
    finally:
        await http.aclose()


async def test_a_2025_session_without_a_get_stream_gets_the_elicitation_on_its_post_stream(
    stack: Stack, upstream: ProtectedMcp
) -> None:
    async with admin_client(stack) as admin:
        name, key = await per_user_tool(stack, admin, upstream, "gil", "pc")
    gil = ElicitedConsents(stack, "gil")
    completed: list[str] = []

    async def on_message(message: Any) -> None:
        root = getattr(message, "root", message)
        if getattr(root, "method", None) == "notifications/elicitation/complete":
            completed.append(root.params.elicitation_id)

    transport = _NoGetStream()
    async with (
        _client(stack, key, transport, elicitation_callback=gil, message_handler=on_message, mode="legacy") as c,
        asyncio.timeout(90),
    ):
        result = await c.call_tool(f"{name}__whoami", {})
    assert not result.is_error, result
    assert result.content[0].text == "gil"  # type: ignore[union-attr]
    assert len(gil.shown) == 1 and (await gil.pages[0]).status_code == 200
    # the proxy told the client the elicitation it had shown is complete
    assert len(completed) == 1 and completed[0]


async def test_a_2026_client_resumes_through_input_required_url_elicitation(
    stack: Stack, upstream: ProtectedMcp
) -> None:
    async with admin_client(stack) as admin:
        name, key = await per_user_tool(stack, admin, upstream, "hana", "pc")
    hana = ElicitedConsents(stack, "hana")
    async with _client(stack, key, elicitation_callback=hana) as c, asyncio.timeout(90):
        assert c.protocol_version == "2026-07-28"
        result = await c.call_tool(f"{name}__whoami", {})
    assert not result.is_error, result
    assert result.content[0].text == "hana"  # type: ignore[union-attr]
    assert len(hana.shown) == 1 and hana.shown[0].startswith(f"{stack.urls['connectors']}/connect/start/")
    assert (await hana.pages[0]).status_code == 200


async def test_a_2026_client_with_progress_sees_the_consent_url_at_once(stack: Stack, upstream: ProtectedMcp) -> None:
    async with admin_client(stack) as admin:
        name, key = await per_user_tool(stack, admin, upstream, "ivo", "pc")
    consents: list[asyncio.Task[Any]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if message and "http" in message and not consents:
            url = message[message.index("http") :].split()[0]
            consents.append(asyncio.create_task(complete_consent(stack, url, "ivo")))

    async with _client(stack, key) as c, asyncio.timeout(90):
        result = await c.call_tool(f"{name}__whoami", {}, progress_callback=on_progress)
    assert not result.is_error, result
    assert result.content[0].text == "ivo"  # type: ignore[union-attr]
    assert consents and (await consents[0]).status_code == 200


@pytest.fixture(scope="module")
async def short_wait(
    nats_url: str, admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Stack, ProtectedMcp]]:
    env = {"proxy": {"WARDEN_PROXY_CONSENT_WAIT_S": "2"}}
    async with isolated_stack(nats_url, admin_dsn, Path(tmp_path_factory.mktemp("shortwait")), env) as st:
        async with (
            oidc_provider(clients=registered_clients(callback_url(st))) as op,
            protected_mcp(op.issuer) as mcp,
        ):
            yield st, mcp


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_an_unanswered_consent_says_the_wait_timed_out_and_after_how_long(
    short_wait: tuple[Stack, ProtectedMcp], mode: str
) -> None:
    st, mcp = short_wait
    async with admin_client(st) as admin:
        name, key = await per_user_tool(st, admin, mcp, "jo", "pc")
    shown: list[str] = []

    async def never_opens(ctx: Any, params: Any) -> Any:
        from mcp import types

        shown.append(params.url)
        return types.ElicitResult(action="accept")

    async with _client(st, key, elicitation_callback=never_opens, mode=mode) as c, asyncio.timeout(60):
        result = await c.call_tool(f"{name}__whoami", {})
    text = " ".join(getattr(b, "text", "") for b in result.content)
    assert result.is_error and shown, text
    # the answer names how long it waited, and a consent URL to connect with before calling again
    # (a person's consent URL is Warden's start URL: /connect/start/<nonce>)
    assert "timed out after 2 s" in text and shown[0].rsplit("/", 1)[0] + "/" in text, text
