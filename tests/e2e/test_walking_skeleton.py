"""The walking skeleton: one call flows agent -> proxy -> connectors -> upstream -> audit,
on the real NATS, the real Postgres and a real MCP server that requires a bearer token."""

from __future__ import annotations

import json
from typing import Any

import httpx
import httpx2
import nats
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from support.infra import wait_for
from support.upstream import bearer_upstream
from warden_cli.embedded import Stack
from warden_common.contracts import ToolCall, ToolCallResult, calls_subject
from warden_common.rpc import decode_reply

pytestmark = pytest.mark.e2e


async def test_one_call_flows_agent_proxy_connectors_upstream_audit(stack: Stack, nats_url: str) -> None:
    seen_text: list[str] = []  # everything any API answered, to search for the token afterwards
    admin = {"Authorization": f"Bearer {stack.admin_token}"}

    async with bearer_upstream() as up, httpx.AsyncClient(timeout=30, headers=admin) as http:

        async def api(method: str, url: str, **kw: Any) -> Any:
            r = await http.request(method, url, **kw)
            seen_text.append(r.text)
            assert r.status_code < 300, f"{method} {url}: {r.status_code} {r.text}"
            return r.json() if r.content else None

        # 1. an admin creates a connector with the upstream's static token
        conn = await api(
            "POST",
            f"{stack.urls['connectors']}/v1/connectors",
            json={"name": "skel", "url": up.url, "auth": {"type": "bearer", "token": up.token}},
        )
        assert conn["secret_stored"] is True and conn["status"] == "active"

        # 2. the registry discovers the tools through the proxy and registers them as skel__<tool>
        found = await api("POST", f"{stack.urls['registry']}/v1/connectors/skel/discover")
        names = {t["name"] for t in found["tools"]}
        assert {"echo", "add", "utc_now", "delete_note"} <= names
        reg = await api(
            "POST",
            f"{stack.urls['registry']}/v1/connectors/skel/tools",
            json={"tools": [{"name": "echo"}, {"name": "add"}]},
        )
        assert set(reg["registered"]) == {"skel__echo", "skel__add"}

        # 3. grant one tool to a profile, and create an agent key bound to it
        await api("POST", f"{stack.urls['registry']}/v1/profiles", json={"name": "skeleton", "description": "e2e"})
        await api(
            "POST",
            f"{stack.urls['registry']}/v1/profiles/skeleton/grants",
            json={"tool": "skel__echo", "reason": "walking skeleton"},
        )
        key = (await api("POST", f"{stack.urls['proxy']}/v1/agent-keys", json={"name": "e2e", "profile": "skeleton"}))[
            "key"
        ]

        # 4. an MCP client sees exactly the granted tool, calls it, gets the upstream result
        calls_before = len(up.gate.seen)
        agent_http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
        async with Client(streamable_http_client(f"{stack.urls['proxy']}/mcp", http_client=agent_http)) as client:
            listed = await client.list_tools()
            assert [t.name for t in listed.tools] == ["skel__echo"]
            result = await client.call_tool("skel__echo", {"text": "hello through warden"})
            assert not result.is_error
            assert result.content[0].text == "hello through warden"
            seen_text.append(listed.model_dump_json())
            seen_text.append(result.model_dump_json())
            # an ungranted tool is invisible, and calling it by name is refused
            with pytest.raises(MCPError) as refused:
                await client.call_tool("skel__add", {"a": 1, "b": 2})
            assert "unknown tool" in refused.value.message
            seen_text.append(refused.value.message)
        await agent_http.aclose()

        # unauthenticated: 401 with Warden's RFC 9728 metadata
        r = await http.post(f"{stack.urls['proxy']}/mcp", headers={"Authorization": ""}, json={})
        assert r.status_code == 401 and "resource_metadata=" in r.headers["www-authenticate"]

        # 5. an internal service calls the same tool over NATS and gets the same result
        nc = await nats.connect(nats_url)
        try:
            msg = await nc.request(
                calls_subject(stack.cfg.root, "skeleton"),
                ToolCall(tool="skel__echo", arguments={"text": "hello through warden"}).model_dump_json().encode(),
                timeout=30,
            )
        finally:
            await nc.close()
        nats_result = decode_reply(msg.data, ToolCallResult)
        seen_text.append(msg.data.decode())
        assert not nats_result.is_error
        assert nats_result.content[0]["text"] == "hello through warden"

        # the upstream received the token on every call Warden made
        assert len(up.gate.seen) > calls_before
        assert all(h == f"Bearer {up.token}".encode() for h in up.gate.seen[calls_before:])

        # 6. audit stored each event of the flow exactly once, and its API returns them
        async def completed() -> list[dict[str, Any]] | None:
            page = await api("GET", f"{stack.urls['audit']}/v1/events", params={"type": "call.completed", "limit": 100})
            items = [e for e in page["items"] if e["refs"]["tool"] == "skel__echo"]
            return items if len(items) >= 2 else None

        done = await wait_for(completed, timeout=30)
        assert len(done) == 2
        for ev in done:
            history = await api("GET", f"{stack.urls['audit']}/v1/events", params={"call_id": ev["refs"]["call_id"]})
            types = [e["type"] for e in history["items"]]
            assert sorted(types) == ["call.completed", "call.requested"], types
            traces = {e["trace_id"] for e in history["items"]}
            assert len(traces) == 1 and None not in traces, "one trace id follows the call"
        denied = await api("GET", f"{stack.urls['audit']}/v1/events", params={"type": "call.denied"})
        assert any(e["refs"]["tool"] == "skel__add" for e in denied["items"])
        everything = await api("GET", f"{stack.urls['audit']}/v1/events", params={"limit": 1000})
        ids = [e["id"] for e in everything["items"]]
        assert len(ids) == len(set(ids))
        assert {"connector.created", "tool.registered", "grant.added", "agent_key.created"} <= {
            e["type"] for e in everything["items"]
        }

    # the token appears nowhere: not in API answers, the agent's view, events, or any log
    assert up.token not in "\n".join(seen_text)
    assert up.token not in json.dumps(everything)
    for p in stack.procs:
        assert up.token not in p.log_path.read_text(errors="replace"), f"token leaked into {p.name} log"
