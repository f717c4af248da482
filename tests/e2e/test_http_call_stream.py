"""`POST /v1/tools/{name}/call/stream` (SSE) for consoles and scripts: progress as it happens,
then one result; refusals as one error event; a per-user consent shown as an event while the
call waits, after which the same stream carries the result made with the user's token."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from conformance.everything_upstream import build_server
from support.admin import admin_client
from support.consent import callback_url, complete_consent
from support.oauth import registered_clients
from support.oidc import oidc_provider
from support.protected_mcp import protected_mcp
from support.upstream import serve_asgi
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


@asynccontextmanager
async def _everything() -> AsyncIterator[str]:
    async with serve_asgi(build_server().streamable_http_app()) as port:
        yield f"http://127.0.0.1:{port}/mcp"


async def _events(
    stack: Stack, key: str, tool: str, arguments: dict[str, Any], on: Any = None
) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    async with (
        httpx.AsyncClient(timeout=120, trust_env=False) as http,
        http.stream(
            "POST",
            f"{stack.urls['proxy']}/v1/tools/{tool}/call/stream",
            json={"arguments": arguments},
            headers={"Authorization": f"Bearer {key}"},
        ) as r,
    ):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        event = None
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((str(event), json.loads(line[6:])))
                if on is not None:
                    await on(out[-1])
    return out


async def test_progress_then_one_result_and_refusals_as_one_error(stack: Stack) -> None:
    async with _everything() as url, admin_client(stack) as admin:
        c = await admin.connector(url, None)
        await admin.register(c)
        key = await admin.key(await admin.profile([f"{c}__test_tool_with_progress", f"{c}__test_simple_text"]))
        events = await _events(stack, key, f"{c}__test_tool_with_progress", {})
        kinds = [e for e, _ in events]
        assert kinds[0] == "started" and kinds[-1] == "result" and kinds.count("result") == 1
        assert [d["progress"] for e, d in events if e == "progress"] == [0, 50, 100]
        assert events[-1][1]["is_error"] is False and events[-1][1]["call_id"]

        denied = await _events(stack, key, f"{c}__test_image_content", {})  # not granted
        assert [e for e, _ in denied] == ["started", "error"] and denied[-1][1]["code"] == "forbidden"

    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        r = await http.post(f"{stack.urls['proxy']}/v1/tools/x__y/call/stream", json={})
        assert r.status_code == 401


async def test_a_consent_event_then_the_result_with_the_users_token(stack: Stack) -> None:
    async with (
        oidc_provider(clients=registered_clients(callback_url(stack))) as op,
        protected_mcp(op.issuer) as up,
        admin_client(stack) as admin,
    ):
        name = "st" + secrets.token_hex(4)
        view = await admin.req(
            "POST",
            "connectors",
            "/v1/connectors?authorize=true",
            json={"name": name, "url": up.url, "scope": "per_user", "auth": {"type": "oauth2"}},
        )
        assert (await complete_consent(stack, view["consent_url"], "the-admin")).status_code == 200
        await admin.register(name, [{"name": "whoami"}])
        profile = await admin.profile([f"{name}__whoami"])
        key = await admin.req("POST", "proxy", "/v1/agent-keys", json={"name": "t", "profile": profile, "user": "ivy"})
        consents: list[asyncio.Task[Any]] = []

        async def on(ev: tuple[str, Any]) -> None:
            if ev[0] == "consent":  # ivy opens the link while the stream waits
                consents.append(asyncio.create_task(complete_consent(stack, ev[1]["url"], "ivy")))

        async with asyncio.timeout(120):
            events = await _events(stack, str(key["key"]), f"{name}__whoami", {}, on)
        assert [e for e, _ in events] == ["started", "consent", "result"]
        assert (
            events[1][1]["url"].startswith(f"{stack.urls['connectors']}/connect/start/")
            and events[1][1]["connector"] == name
        )
        assert events[-1][1]["content"][0]["text"] == "ivy"
        assert (await consents[0]).status_code == 200
