"""Resources, prompts, completion and server-to-client passthrough on the MCP endpoint, end to
end: real NATS, Postgres, the four services, and the conformance upstream (an `mcp` server)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import mcp_types as types
import pytest
from conformance.everything_upstream import build_server
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from support.admin import Admin, admin_client
from support.infra import wait_for
from support.upstream import catalog_upstream, serve_asgi
from warden_cli.embedded import Stack
from warden_client import WardenClient
from warden_common.errors import RemoteError

pytestmark = pytest.mark.e2e


@asynccontextmanager
async def everything() -> AsyncIterator[tuple[str, Any]]:
    server = build_server()
    async with serve_asgi(server.streamable_http_app()) as port:
        yield f"http://127.0.0.1:{port}/mcp", server


async def _profile(admin: Admin, grants: list[str], tool_names: str = "namespaced") -> str:
    name = "p" + secrets.token_hex(4)
    await admin.req("POST", "registry", "/v1/profiles", json={"name": name, "tool_names": tool_names})
    for g in grants:
        await admin.req("POST", "registry", f"/v1/profiles/{name}/grants", json={"tool": g, "reason": "test"})
    return name


@asynccontextmanager
async def agent(stack: Stack, key: str, **callbacks: Any) -> AsyncIterator[Client]:
    """A handshake-era (2025) session: the era with server-to-client requests during a call."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60)
    try:
        transport = streamable_http_client(f"{stack.urls['proxy']}/mcp", http_client=http)
        async with Client(transport, mode="legacy", cache=None, **callbacks) as c:
            yield c
    finally:
        await http.aclose()


def _text(r: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in r.content)


async def test_resources_prompts_and_completion_of_a_granted_connector(stack: Stack) -> None:
    async with everything() as (url, server), admin_client(stack) as admin:
        c = await admin.connector(url, None)
        await admin.register(c)
        key = await admin.key(await _profile(admin, [f"{c}__*"], tool_names="bare"))
        updated = asyncio.Event()

        async def on_message(message: Any) -> None:
            if (
                isinstance(message, types.ResourceUpdatedNotification)
                and message.params.uri == "test://watched-resource"
            ):
                updated.set()

        async with agent(stack, key, message_handler=on_message) as client:
            caps = client.session.server_capabilities if hasattr(client, "session") else None
            assert caps is None or (caps.resources is not None and caps.prompts is not None)
            assert "test_simple_text" in {t.name for t in (await client.list_tools()).tools}
            listed = {r.uri for r in (await client.list_resources()).resources}
            assert {"test://static-text", "test://static-binary"} <= listed
            text = (await client.read_resource("test://static-text")).contents[0]
            assert getattr(text, "text", "") == "This is the content of the static text resource."
            blob = (await client.read_resource("test://static-binary")).contents[0]
            assert getattr(blob, "blob", "") and blob.mime_type == "image/png"
            templates = (await client.list_resource_templates()).resource_templates
            assert [t.uri_template for t in templates] == ["test://template/{id}/data"]
            data = (await client.read_resource("test://template/123/data")).contents[0]
            assert json.loads(getattr(data, "text", "{}"))["id"] == "123"
            # a URI no listing names (from a tool result) goes to the profile's only connector
            with pytest.raises(MCPError):
                await client.read_resource("test://nothing-here")
            prompts = {p.name for p in (await client.list_prompts()).prompts}
            assert {"test_simple_prompt", "test_prompt_with_arguments"} <= prompts
            got = await client.get_prompt("test_prompt_with_arguments", {"arg1": "hello", "arg2": "world"})
            assert getattr(got.messages[0].content, "text", "") == "Prompt with arguments: arg1='hello', arg2='world'"
            done = await client.complete(
                types.PromptReference(type="ref/prompt", name="test_prompt_with_arguments"),
                {"name": "arg1", "value": "par"},
            )
            assert done.completion.values == ["paris", "park", "party"]
            await client.subscribe_resource("test://watched-resource")
            assert "test://watched-resource" in server.subscriptions
            # the upstream says it changed: the subscribed agent hears it
            await server.subscriber_sessions["test://watched-resource"].send_resource_updated("test://watched-resource")
            async with asyncio.timeout(10):
                await updated.wait()
            await client.unsubscribe_resource("test://watched-resource")
            assert "test://watched-resource" not in server.subscriptions

        async def audited(type: str) -> list[dict[str, Any]]:
            page = await admin.req("GET", "audit", "/v1/events", params={"type": type, "connector": c})
            return list(page["items"])

        async def both_reads() -> list[dict[str, Any]]:
            got = await audited("resource.read")
            return got if {"test://static-text", "test://static-binary"} <= {e["data"]["uri"] for e in got} else []

        reads = await wait_for(both_reads, timeout=10)  # the events arrive one by one
        assert all("contents" not in e["data"] and "text" not in e["data"] for e in reads)  # never contents
        fetched = await wait_for(lambda: audited("prompt.fetched"), timeout=10)
        assert fetched[0]["data"]["prompt"] == "test_prompt_with_arguments"
        assert fetched[0]["refs"]["profile"] and fetched[0]["actor"]["kind"] == "agent"


async def test_two_connectors_never_collide_and_a_profile_sees_only_its_grants(stack: Stack) -> None:
    async with everything() as (url, _), admin_client(stack) as admin:
        a = await admin.connector(url, None)
        b = await admin.connector(url, None)
        await admin.register(a)
        await admin.register(b)
        both = await admin.key(await _profile(admin, [f"{a}__*", f"{b}__test_simple_text"], tool_names="bare"))
        async with agent(stack, both) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            # test_simple_text is offered by both: namespaced; the rest are a's alone: bare
            assert {f"{a}__test_simple_text", f"{b}__test_simple_text", "test_image_content"} <= tools
            assert "test_simple_text" not in tools
            uris = {r.uri for r in (await client.list_resources()).resources}
            assert {f"{a}+test://static-text", f"{b}+test://static-text"} <= uris
            assert "test://static-text" not in uris
            read = (await client.read_resource(f"{b}+test://static-text")).contents[0]
            assert read.uri == f"{b}+test://static-text"
            with pytest.raises(MCPError) as ambiguous:
                await client.read_resource("test://static-text")
            assert f"{a}+test://static-text" in ambiguous.value.message
            prompts = {p.name for p in (await client.list_prompts()).prompts}
            assert {f"{a}__test_simple_prompt", f"{b}__test_simple_prompt"} <= prompts
            got = await client.get_prompt(f"{b}__test_simple_prompt")
            assert getattr(got.messages[0].content, "text", "") == "This is a simple prompt for testing."

        only_a = await admin.key(await _profile(admin, [f"{a}__*"]))
        async with agent(stack, only_a) as client:
            assert all(p.name.startswith(f"{a}__") for p in (await client.list_prompts()).prompts)
            assert all(not r.uri.startswith(f"{b}+") for r in (await client.list_resources()).resources)
            with pytest.raises(MCPError):
                await client.get_prompt(f"{b}__test_simple_prompt")

        nothing = await admin.key(await _profile(admin, []))
        async with agent(stack, nothing) as client:
            assert (await client.list_resources()).resources == []
            assert (await client.list_prompts()).prompts == []
            with pytest.raises(MCPError):
                await client.read_resource("test://static-text")


async def test_sampling_elicitation_and_logs_reach_the_calling_agent(stack: Stack) -> None:
    asked: list[str] = []
    logs: list[str] = []

    async def sampling(ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append(getattr(params.messages[0].content, "text", ""))
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="forty-two"), model="test"
        )

    async def elicitation(ctx: Any, params: Any) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.com"})

    async def logging(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(str(params.data))

    async with everything() as (url, _), admin_client(stack) as admin:
        c = await admin.connector(url, None)
        await admin.register(c)
        key = await admin.key(await _profile(admin, [f"{c}__*"]))
        async with agent(
            stack, key, sampling_callback=sampling, elicitation_callback=elicitation, logging_callback=logging
        ) as client:
            r = await client.call_tool(f"{c}__test_sampling", {"prompt": "the answer?"})
            assert _text(r) == "LLM response: forty-two" and asked == ["the answer?"]
            r = await client.call_tool(f"{c}__test_elicitation", {"message": "who are you?"})
            assert "action=accept" in _text(r) and "ada@example.com" in _text(r)
            await client.set_logging_level("info")
            r = await client.call_tool(f"{c}__test_tool_with_logging", {})
            assert not r.is_error
            assert logs == ["Tool execution started", "Tool processing data", "Tool execution completed"]
            logs.clear()
            await client.set_logging_level("error")  # the agent's level, applied by Warden
            await client.call_tool(f"{c}__test_tool_with_logging", {})
            assert logs == []
        # an agent that cannot sample: the upstream is told so, and its tool answers an error
        async with agent(stack, key) as plain:
            r = await plain.call_tool(f"{c}__test_sampling", {"prompt": "x"})
            assert r.is_error


async def test_revoking_the_grant_cuts_resources_and_prompts_at_once(stack: Stack) -> None:
    async with everything() as (url, _), admin_client(stack) as admin:
        c = await admin.connector(url, None)
        await admin.register(c)
        p = await _profile(admin, [])
        g = await admin.req(
            "POST", "registry", f"/v1/profiles/{p}/grants", json={"tool": f"{c}__test_simple_text", "reason": "test"}
        )
        async with agent(stack, await admin.key(p)) as client:
            assert (await client.read_resource("test://static-text")).contents
            assert (await client.get_prompt(f"{c}__test_simple_prompt")).messages
            await admin.req("DELETE", "registry", f"/v1/profiles/{p}/grants/{g['id']}")
            with pytest.raises(MCPError):
                await client.read_resource("test://static-text")
            with pytest.raises(MCPError):
                await client.get_prompt(f"{c}__test_simple_prompt")


async def test_progress_reaches_the_caller_and_internal_callers_are_never_asked(stack: Stack, nats_url: str) -> None:
    async with everything() as (url, _), admin_client(stack) as admin:
        c = await admin.connector(url, None)
        await admin.register(c)
        p = await _profile(admin, [f"{c}__*"])
        seen: list[float] = []

        async def progress(value: float, total: float | None, message: str | None) -> None:
            seen.append(value)

        async with agent(stack, await admin.key(p)) as client:
            r = await client.call_tool(f"{c}__test_tool_with_progress", {}, progress_callback=progress)
            assert not r.is_error and seen == [0, 50, 100]
        # a service on NATS has no session to ask: the upstream's elicitation request is refused
        # at once (this upstream then fails the call), rather than waiting for the timeout
        async with WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root) as warden:
            with pytest.raises(RemoteError) as refused:
                async with asyncio.timeout(10):
                    await warden.call(f"{c}__test_elicitation", {"message": "anyone?"})
            assert "elicitation/create is not available through Warden" in refused.value.message


async def test_an_upstream_without_resources_or_prompts_keeps_its_tools(stack: Stack) -> None:
    tools = {"echo": {"description": "Echo the arguments.", "input_schema": {"type": "object"}}}
    async with catalog_upstream(tools) as cat, admin_client(stack) as admin:
        c = await admin.connector(cat.url, None)
        await admin.register(c)
        async with agent(stack, await admin.key(await _profile(admin, [f"{c}__*"]))) as client:
            for _ in range(5):  # each listing meets "method not found" upstream: more than the breaker's threshold
                assert (await client.list_resources()).resources == []
                assert (await client.list_prompts()).prompts == []
                with pytest.raises(MCPError):
                    await client.read_resource("test://static-text")
            r = await client.call_tool(f"{c}__echo", {"x": 1})
            assert not r.is_error and json.loads(_text(r)) == {"x": 1}


async def test_a_call_by_bare_name_is_audited_under_the_catalog_name(stack: Stack) -> None:
    async with everything() as (url, _), admin_client(stack) as admin:
        c = await admin.connector(url, None)
        await admin.register(c)
        key = await admin.key(await _profile(admin, [f"{c}__*"], tool_names="bare"))
        async with agent(stack, key) as client:
            assert not (await client.call_tool("test_simple_text", {})).is_error

        async def audited() -> bool:  # an SRE filtering on `<alias>__*` finds the bare call
            page = await admin.req("GET", "audit", "/v1/events", params={"type": "call.completed", "tool": f"{c}__*"})
            return any(e["refs"]["tool"] == f"{c}__test_simple_text" for e in page["items"])

        assert await wait_for(audited, timeout=10)
