"""Governance of held calls (issue 16, items 1-5): a held call runs only while its authority
holds, only the approver the tool names may decide it, a caller that went away abandons it,
a waiting caller hears progress, and the audit names the admin who decided."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import httpx
import pytest
from support.admin import Admin, admin_client, agent
from support.infra import NAMED_ADMINS, wait_for
from support.upstream import trouble_upstream
from warden_cli.embedded import Stack
from warden_client import WardenClient
from warden_common.contracts import ErrorCode
from warden_common.errors import RemoteError, Timeout

pytestmark = pytest.mark.e2e


async def _pending(admin: Admin, tool: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        items = await admin.req("GET", "proxy", "/v1/approvals", params={"status": "pending"})
        return next((a for a in items if a["tool"] == tool), None)

    found: dict[str, Any] = await wait_for(find, timeout=10)
    return found


async def _approval(admin: Admin, approval_id: str, status: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        items = await admin.req("GET", "proxy", "/v1/approvals", params={"status": status})
        return next((a for a in items if a["id"] == approval_id), None)

    found: dict[str, Any] = await wait_for(find, timeout=10)
    return found


@pytest.mark.parametrize("change", ["grant deleted", "tool disabled"])
async def test_a_held_call_whose_authority_went_away_is_refused_and_shown_revoked(
    stack: Stack, nats_url: str, change: str
) -> None:
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "record", "auto_approve": False}])
        p = await admin.profile([f"{c}__*"])
        tool = f"{c}__record"
        async with WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root) as warden:
            call = asyncio.create_task(warden.call(tool, {"key": "gone"}, timeout_s=60))
            held = await _pending(admin, tool)
            if change == "grant deleted":
                grants = (await admin.req("GET", "registry", f"/v1/profiles/{p}"))["grants"]
                await admin.req("DELETE", "registry", f"/v1/profiles/{p}/grants/{grants[0]['id']}")
            else:
                await admin.req("PATCH", "registry", f"/v1/tools/{tool}", json={"enabled": False})
            # the queue shows the call as revoked, with the reason
            revoked = await _approval(admin, held["id"], "revoked")
            assert revoked["reason"] and tool in revoked["reason"]
            with pytest.raises(RemoteError) as e:
                await asyncio.wait_for(call, 20)
            assert e.value.code == ErrorCode.approval_rejected and tool in e.value.message
            # approving it now is refused, and the upstream never ran
            await admin.req("POST", "proxy", f"/v1/approvals/{held['id']}/approve", expect=409)
        assert "gone" not in up.trouble.executions


async def test_an_approval_that_races_a_revoked_grant_never_runs_the_call(stack: Stack, nats_url: str) -> None:
    """The grant is deleted and the call approved at once: whichever lands first, the proxy
    checks the grant again after the approval and refuses with the reason."""
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "record", "auto_approve": False}])
        p = await admin.profile([f"{c}__*"])
        tool = f"{c}__record"
        async with WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root) as warden:
            call = asyncio.create_task(warden.call(tool, {"key": "race"}, timeout_s=60))
            held = await _pending(admin, tool)
            grants = (await admin.req("GET", "registry", f"/v1/profiles/{p}"))["grants"]
            await admin.req("DELETE", "registry", f"/v1/profiles/{p}/grants/{grants[0]['id']}")
            await admin.req("POST", "proxy", f"/v1/approvals/{held['id']}/approve", expect=(200, 409))
            with pytest.raises(RemoteError) as e:
                await asyncio.wait_for(call, 20)
            assert e.value.code == ErrorCode.approval_rejected and f"not available to profile {p}" in e.value.message
        assert "race" not in up.trouble.executions


async def test_the_audit_names_the_admin_who_did_each_thing(stack: Stack, nats_url: str) -> None:
    """Named admin tokens (ADMIN_TOKENS) in all four services: each action is recorded as
    actor admin:<name>; a header cannot claim another name; ADMIN_TOKEN stays `admin`."""
    alice = {"Authorization": f"Bearer {NAMED_ADMINS['alice']}", "X-Warden-Actor": "mallory"}
    bob = {"Authorization": f"Bearer {NAMED_ADMINS['bob']}"}
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = "c" + secrets.token_hex(4)
        auth = {"type": "bearer", "token": up.token}
        await admin.req(
            "POST", "connectors", "/v1/connectors", json={"name": c, "url": up.url, "auth": auth}, headers=alice
        )
        body = {"tools": [{"name": "record", "auto_approve": False}]}
        await admin.req("POST", "registry", f"/v1/connectors/{c}/tools", json=body, headers=alice)
        p = "p" + secrets.token_hex(4)
        await admin.req("POST", "registry", "/v1/profiles", json={"name": p}, headers=alice)
        grant = {"tool": f"{c}__*", "reason": "test"}
        await admin.req("POST", "registry", f"/v1/profiles/{p}/grants", json=grant, headers=alice)
        await admin.req("POST", "proxy", "/v1/agent-keys", json={"name": "k", "profile": p}, headers=alice)
        tool = f"{c}__record"
        async with WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root) as warden:
            call = asyncio.create_task(warden.call(tool, {"key": "named"}, timeout_s=60))
            held = await _pending(admin, tool)
            decided = await admin.req("POST", "proxy", f"/v1/approvals/{held['id']}/approve", json={}, headers=bob)
            assert decided["decided_by"] == "bob"
            assert (await asyncio.wait_for(call, 20)).content[0]["text"] == "named:1"
        # the single ADMIN_TOKEN is the admin named `admin`; a wrong token is refused everywhere
        keys = await admin.req("GET", "proxy", "/v1/agent-keys")
        assert any(k["created_by"] == "alice" for k in keys)
        wrong = {"Authorization": "Bearer wrong-token-0000000000"}
        for service, path in (("connectors", "/v1/connectors"), ("registry", "/v1/profiles"), ("audit", "/v1/events")):
            await admin.req("GET", service, path, headers=bob)
            await admin.req("GET", service, path, headers=wrong, expect=401)

        async def recorded() -> dict[str, Any] | None:
            page = await admin.req("GET", "audit", "/v1/events", params={"actor": "admin:alice"}, headers=bob)
            types = {e["type"] for e in page["items"]}
            approved = await admin.req(
                "GET", "audit", "/v1/events", params={"type": "call.approved", "tool": tool}, headers=bob
            )
            by = {(e["actor"]["kind"], e["actor"]["id"]) for e in approved["items"]}
            want = {"connector.created", "tool.registered", "grant.added"}
            return {"types": types, "by": by} if want <= types and ("admin", "bob") in by else None

        seen = await wait_for(recorded, timeout=15)
        assert ("admin", "mallory") not in seen["by"]
        mallory = await admin.req("GET", "audit", "/v1/events", params={"actor": "admin:mallory"})
        assert mallory["items"] == []


@pytest.mark.parametrize("mode", ["legacy", "auto"])  # a 2025 session, and a 2026-07-28 client
async def test_a_held_call_sends_progress_while_it_waits(stack: Stack, mode: str) -> None:
    """With a progress token, a call waiting for approval hears from the proxy at once and then
    every 10 s (under the 60 s request timeout of common clients), then completes."""
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "record", "auto_approve": False}])
        p = await admin.profile([f"{c}__*"])
        key = await admin.key(p)
        heard: list[str] = []
        first = asyncio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            heard.append(message or "")
            first.set()

        async with agent(stack, key, mode=mode) as client:
            call = asyncio.create_task(
                client.call_tool(f"{c}__record", {"key": f"progress-{mode}"}, progress_callback=on_progress)
            )
            held = await _pending(admin, f"{c}__record")
            await asyncio.wait_for(first.wait(), 8)
            await admin.req("POST", "proxy", f"/v1/approvals/{held['id']}/approve", json={})
            ok = await asyncio.wait_for(call, 20)
        assert not ok.is_error
        assert all(f"waiting for an approval of {c}__record" in m and held["id"] in m for m in heard)


async def test_a_held_call_whose_caller_went_away_is_abandoned(stack: Stack, nats_url: str) -> None:
    """The MCP request cancelled (its session closed) or the HTTP client gone: the approval is
    `abandoned` in the queue, approving it is refused, the upstream never runs. A durable call
    keeps waiting (its result is stored): test_durable_call_survives_a_killed_proxy_and_runs_once."""
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "record", "auto_approve": False}])
        p = await admin.profile([f"{c}__*"])
        key = await admin.key(p)
        tool = f"{c}__record"
        # MCP: the agent gives up on the request and closes its session
        async with agent(stack, key, mode="legacy") as client:
            call = asyncio.create_task(client.call_tool(tool, {"key": "left-mcp"}))
            held = await _pending(admin, tool)
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
        gone = await _approval(admin, held["id"], "abandoned")
        assert gone["reason"] == "the caller went away"
        await admin.req("POST", "proxy", f"/v1/approvals/{held['id']}/approve", expect=409)
        # HTTP: the client disconnects while the call is held
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            url = f"{stack.urls['proxy']}/v1/tools/{tool}/call"
            call = asyncio.create_task(http.post(url, json={"arguments": {"key": "left-http"}}))
            held = await _pending(admin, tool)
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
        await _approval(admin, held["id"], "abandoned")
        await admin.req("POST", "proxy", f"/v1/approvals/{held['id']}/approve", expect=409)
        assert "left-mcp" not in up.trouble.executions and "left-http" not in up.trouble.executions


async def test_a_held_nats_call_is_abandoned_when_its_requester_stops_waiting(stack: Stack, nats_url: str) -> None:
    """A plain NATS request cannot be seen to go away: it says how long it waits
    (`ToolCall.wait_s`, from WardenClient.call's timeout), and past that its held call is
    `abandoned`, so approving it later is refused and the upstream never runs."""
    async with trouble_upstream() as up, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        await admin.register(c, [{"name": "record", "auto_approve": False}])
        p = await admin.profile([f"{c}__*"])
        tool = f"{c}__record"
        async with WardenClient(nats_url=nats_url, profile=p, root=stack.cfg.root) as warden:
            call = asyncio.create_task(warden.call(tool, {"key": "left-nats"}, timeout_s=3))
            held = await _pending(admin, tool)
            with pytest.raises(Timeout):
                await call
        gone = await _approval(admin, held["id"], "abandoned")
        assert "stopped waiting after 3s" in gone["reason"], gone
        await admin.req("POST", "proxy", f"/v1/approvals/{held['id']}/approve", expect=409)
        assert "left-nats" not in up.trouble.executions
