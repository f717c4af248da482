"""Stateless (2026-07-28) tools/call on the MCP endpoint, which the proxy answers on its lean
path: the same wire answers as the SDK's path, errors included, and the upstream's log
messages still reach the caller. Real NATS, Postgres, the four services and an `mcp` upstream."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import mcp_types as types
import pytest
from conformance.everything_upstream import build_server
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from support.admin import admin_client
from support.upstream import serve_asgi
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e

_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}


@asynccontextmanager
async def _setup(stack: Stack) -> AsyncIterator[tuple[str, str]]:
    """(tool prefix, agent key) for a profile granted the conformance upstream's tools."""
    server = build_server()
    async with serve_asgi(server.streamable_http_app()) as port, admin_client(stack) as admin:
        c = await admin.connector(f"http://127.0.0.1:{port}/mcp", None)
        await admin.register(c)
        profile = "p" + secrets.token_hex(4)
        await admin.req("POST", "registry", "/v1/profiles", json={"name": profile})
        await admin.req(
            "POST", "registry", f"/v1/profiles/{profile}/grants", json={"tool": f"{c}__*", "reason": "test"}
        )
        yield c, await admin.key(profile)


async def _post(stack: Stack, key: str, name: str, arguments: Any, **meta: Any) -> httpx.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": {**_META, **meta}},
    }
    headers = {
        "Authorization": f"Bearer {key}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": name,
    }
    async with httpx.AsyncClient(timeout=30) as h:
        return await h.post(f"{stack.urls['proxy']}/mcp", content=json.dumps(body), headers=headers)


def _answer(r: httpx.Response) -> Any:
    if r.headers["content-type"].startswith("text/event-stream"):
        events = [line[5:].strip() for line in r.text.splitlines() if line.startswith("data:")]
        return json.loads(events[-1])
    return r.json()


async def test_stateless_calls_answer_as_the_sdk_path_does(stack: Stack) -> None:
    async with _setup(stack) as (c, key):
        cases = [
            (f"{c}__test_simple_text", {}),  # a result
            (f"{c}__test_multiple_content_types", {}),  # text, image and resource content
            (f"{c}__test_sampling", {"prompt": 5}),  # invalid params, naming the field
            (f"{c}__test_sampling", {}),  # a missing required argument
            (f"{c}__nope", {}),  # not granted / unknown
            (f"{c}__test_error_handling", {}),  # the tool's own error
            (f"{c}__test_sampling", {"prompt": "x"}),  # the upstream asks; no back-channel here
        ]
        for name, arguments in cases:
            lean = await _post(stack, key, name, arguments)
            # a progress token sends the same request down the SDK's path
            sdk = await _post(stack, key, name, arguments, progressToken="p1")
            assert lean.status_code == sdk.status_code, (name, arguments)
            assert lean.headers["content-type"] == "application/json"
            assert _answer(lean) == _answer(sdk), (name, arguments)
        invalid = _answer(await _post(stack, key, f"{c}__test_sampling", {"prompt": 5}))
        assert invalid["error"]["code"] == types.INVALID_PARAMS and invalid["error"]["data"] == {"field": "prompt"}


async def test_a_stateless_client_calls_tools_and_gets_the_upstream_logs(stack: Stack) -> None:
    logs: list[str] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(str(params.data))

    async with _setup(stack) as (c, key):
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60)
        try:
            transport = streamable_http_client(f"{stack.urls['proxy']}/mcp", http_client=http)
            async with Client(transport, logging_callback=on_log) as client:
                r = await client.call_tool(f"{c}__test_simple_text", {})
                assert not r.is_error and r.content
                with pytest.raises(MCPError) as e:
                    await client.call_tool(f"{c}__test_sampling", {"prompt": 5})
                assert e.value.error.code == types.INVALID_PARAMS
                r = await client.call_tool(f"{c}__test_tool_with_logging", {})
                assert not r.is_error
                assert logs == ["Tool execution started", "Tool processing data", "Tool execution completed"]
                # no back-channel on a stateless request: the upstream's sampling request is refused
                r = await client.call_tool(f"{c}__test_sampling", {"prompt": "x"})
                assert r.is_error
        finally:
            await http.aclose()
