"""A held call asks the caller at the client when it can show forms (MCP form elicitation)
and the tool's approver lets it (`any`; `user` for a signed-in user): the answer approves or
rejects it (the first decision wins, theirs or an admin's), is audited as theirs, and the
upstream runs only after an approval. With the default approver of a write tool (`admin`),
an agent can never approve its own call."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mcp import types
from support.admin import admin_client, agent
from support.infra import wait_for
from support.upstream import trouble_upstream
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


async def test_the_user_at_the_client_approves_or_rejects_a_held_call(stack: Stack) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "record", "auto_approve": False, "approver": "any"}])
        p = await admin.profile([f"{c}__*"])
        key = await admin.req("POST", "proxy", "/v1/agent-keys", json={"name": "t", "profile": p, "user": "uma"})
        asked: list[str] = []
        answers = iter([{"approve": True}, {"approve": False, "reason": "not that one"}])

        async def on_elicit(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            asked.append(params.message)
            return types.ElicitResult(action="accept", content=next(answers))

        async with agent(stack, str(key["key"]), elicitation_callback=on_elicit, mode="legacy") as client:
            ok = await client.call_tool(f"{c}__record", {"key": "yes"})
            no = await client.call_tool(f"{c}__record", {"key": "nope"})
        assert not ok.is_error and ok.content[0].text == "yes:1"  # type: ignore[union-attr]
        assert no.is_error and "not that one" in no.content[0].text  # type: ignore[union-attr]
        assert len(asked) == 2 and f"{c}__record" in asked[0] and '"yes"' in asked[0]
        assert "nope" not in up.trouble.executions  # rejected: the upstream never ran

        async def audited() -> bool:
            page = await admin.req(
                "GET", "audit", "/v1/events", params={"type": "call.approved", "tool": f"{c}__record"}
            )
            # the agent key answered the form: recorded as that key, not as the user it acts for
            return any(e["actor"] == {"kind": "agent", "id": key["prefix"]} for e in page["items"])

        assert await wait_for(audited, timeout=10)
        pending = await admin.req("GET", "proxy", "/v1/approvals", params={"status": "pending"})
        assert all(a["tool"] != f"{c}__record" for a in pending)  # both decided, none left waiting


@pytest.mark.parametrize("approver", [None, "admin", "user"])
async def test_an_agent_key_cannot_approve_its_own_call(stack: Stack, approver: str | None) -> None:
    """The default for a write tool (admin) and `user` (an agent key is unattended, even when
    it acts for a user): the client is never asked; the call waits for an admin, who is
    recorded by name."""
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        sel: dict[str, Any] = {"name": "record", "auto_approve": False, "operation": "write"}
        if approver:
            sel["approver"] = approver
        await admin.register(c, [sel])
        shown = await admin.req("GET", "registry", f"/v1/tools/{c}__record")
        assert shown["approver"] == approver
        p = await admin.profile([f"{c}__*"])
        key = await admin.req("POST", "proxy", "/v1/agent-keys", json={"name": "t", "profile": p, "user": "uma"})
        asked: list[str] = []

        async def on_elicit(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            asked.append(params.message)
            return types.ElicitResult(action="accept", content={"approve": True})

        async with agent(stack, str(key["key"]), elicitation_callback=on_elicit, mode="legacy") as client:
            call = asyncio.create_task(client.call_tool(f"{c}__record", {"key": f"own-{approver}"}))

            async def pending() -> dict[str, Any] | None:
                items = await admin.req("GET", "proxy", "/v1/approvals", params={"status": "pending"})
                return next((a for a in items if a["tool"] == f"{c}__record"), None)

            held = await wait_for(pending, timeout=10)
            assert held["approver"] == (approver or "admin")
            decided = await admin.req("POST", "proxy", f"/v1/approvals/{held['id']}/approve", json={})
            assert (decided["decided_by_kind"], decided["decided_by"]) == ("admin", "admin")
            ok = await asyncio.wait_for(call, 20)
        assert not ok.is_error and asked == []  # the form was never shown


async def test_a_connector_default_approver_applies_to_its_tools(stack: Stack) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.req(
            "POST",
            "registry",
            f"/v1/connectors/{c}/tools",
            json={"tools": [{"name": "record", "auto_approve": False}], "approver_default": "any"},
        )
        assert (await admin.req("GET", "registry", f"/v1/connectors/{c}"))["approver_default"] == "any"
        p = await admin.profile([f"{c}__*"])
        resolved = await admin.req("GET", "registry", f"/v1/profiles/{p}/resolve/{c}__record")
        assert resolved["approver"] == "any"
        await admin.req("PATCH", "registry", f"/v1/tools/{c}__record", json={"approver": "admin"})
        resolved = await admin.req("GET", "registry", f"/v1/profiles/{p}/resolve/{c}__record")
        assert resolved["approver"] == "admin"
