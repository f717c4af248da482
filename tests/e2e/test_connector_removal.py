"""A removed connector takes its tools and grants along, and a connector created later under
the same name (at another server) inherits nothing (issue 16, item 0c): its tools are not
callable until discovered and registered, and no earlier grant runs on it, even while the
registry has not yet heard of the removal."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from support.admin import Admin, admin_client, agent
from support.infra import isolated_stack, wait_for
from support.upstream import trouble_upstream
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def slow_cache_stack(
    nats_url: str, admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    """A stack whose proxy keeps resolved tools for an hour: while the registry is down, the
    proxy answers from what it resolved before the connector was replaced."""
    env = {"proxy": {"WARDEN_PROXY_CACHE_TTL_S": "3600"}}
    async with isolated_stack(nats_url, admin_dsn, Path(tmp_path_factory.mktemp("removal")), env) as st:
        yield st


async def _refused(client: Any, tool: str) -> bool:
    """The call did not run: an unknown tool (a JSON-RPC error) or an error result."""
    try:
        r = await client.call_tool(tool, {"key": "k"})
    except MCPError:
        return True
    return bool(r.is_error)


def _text(r: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in r.content)


async def _events(admin: Admin, **params: str) -> list[dict[str, Any]]:
    return list((await admin.req("GET", "audit", "/v1/events", params=params))["items"])


async def _grants(admin: Admin, profile: str) -> list[str]:
    return [g["tool"] for g in (await admin.req("GET", "registry", f"/v1/profiles/{profile}"))["grants"]]


async def test_removing_a_connector_unregisters_its_tools_and_revokes_their_grants(stack: Stack) -> None:
    async with trouble_upstream() as up, trouble_upstream() as other, admin_client(stack) as admin:
        c = await admin.connector(up.url, up.token)
        d = await admin.connector(other.url, other.token)
        await admin.register(c)
        await admin.register(d)
        p = await admin.profile([f"{c}__*", f"{c}__record", f"{d}__record"])
        broad = await admin.profile(["*"])  # also matches d's tools: a grant on the catalog, it stays
        key = await admin.key(p)
        async with agent(stack, key) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert f"{c}__record" in names and f"{d}__record" in names

            await admin.req("DELETE", "connectors", f"/v1/connectors/{c}")

            async def unregistered() -> bool:
                return not await admin.req("GET", "registry", "/v1/tools", params={"connector": c})

            assert await wait_for(unregistered, timeout=20)

            async def unlisted() -> bool:
                return not any(t.name.startswith(f"{c}__") for t in (await client.list_tools()).tools)

            assert await wait_for(unlisted, timeout=10)
            assert f"{d}__record" in {t.name for t in (await client.list_tools()).tools}
            assert await _refused(client, f"{c}__record") and up.trouble.executions == {}
        assert await _grants(admin, p) == [f"{d}__record"]
        assert await _grants(admin, broad) == ["*"]
        r = await admin.http.get(f"{stack.urls['registry']}/v1/tools/{c}__record")
        assert r.status_code == 404

        async def audited() -> bool:
            gone = await _events(admin, type="tool.unregistered", connector=c)
            revoked = await _events(admin, type="grant.revoked", profile=p)
            return len(gone) == 4 and len(revoked) == 2

        assert await wait_for(audited, timeout=20)
        for e in await _events(admin, type="tool.unregistered", connector=c):
            assert e["data"]["reason"] == "connector removed" and e["data"]["connector_id"]
        revoked = await _events(admin, type="grant.revoked", profile=p)
        assert {e["refs"]["tool"] for e in revoked} == {f"{c}__*", f"{c}__record"}
        assert all(e["data"]["reason"] == "connector removed" for e in revoked)


def _stop(stack: Stack, name: str) -> None:
    proc = next(p for p in stack.procs if p.name == name)
    os.killpg(proc.popen.pid, signal.SIGTERM)
    proc.popen.wait(15)
    stack.procs.remove(proc)


async def test_a_new_connector_under_the_same_name_inherits_no_tool_and_no_grant(slow_cache_stack: Stack) -> None:
    stack = slow_cache_stack
    async with trouble_upstream() as old, trouble_upstream() as new, admin_client(stack) as admin:
        c = await admin.connector(old.url, old.token)
        await admin.register(c)
        p = await admin.profile([f"{c}__*"])
        key = await admin.key(p)
        async with agent(stack, key) as client:
            assert _text(await client.call_tool(f"{c}__record", {"key": "k"})) == "k:1"

        # the registry is down while the connector is removed and created again elsewhere
        _stop(stack, "registry")
        await admin.req("DELETE", "connectors", f"/v1/connectors/{c}")
        await admin.connector(new.url, new.token, name=c)
        async with agent(stack, key) as client:
            # the proxy still resolves the old registration (cached): the credential is another
            # connector's, so the call is refused, and nothing reaches the new server
            r = await client.call_tool(f"{c}__record", {"key": "k"})
            assert r.is_error and "earlier connector" in _text(r), _text(r)
        assert new.trouble.executions == {} and old.trouble.executions == {"k": 1}

        async def refusal_audited() -> bool:
            failed = await _events(admin, type="call.failed", tool=f"{c}__record")
            return any("earlier connector" in e["data"].get("reason", "") for e in failed)

        assert await wait_for(refusal_audited, timeout=20)

        # back up, the registry catches up on the removal it missed (durable consumer)
        stack.start_service("registry")
        await stack.wait_ready(["registry"])

        async def caught_up() -> bool:
            tools = await admin.req("GET", "registry", "/v1/tools", params={"connector": c})
            return not tools and not await _grants(admin, p)

        assert await wait_for(caught_up, timeout=30)
        found = (await admin.req("POST", "registry", f"/v1/connectors/{c}/discover"))["tools"]
        assert found and not any(t["registered"] for t in found)
        async with agent(stack, key) as client:
            assert not (await client.list_tools()).tools
            assert await _refused(client, f"{c}__record")
            # registered again by an admin: still no grant of before applies
            await admin.register(c)
            assert not (await client.list_tools()).tools
            assert await _refused(client, f"{c}__record")
        assert new.trouble.executions == {}
        tools = await admin.req("GET", "registry", "/v1/tools", params={"connector": c})
        cid = (await admin.req("GET", "connectors", f"/v1/connectors/{c}")).get("id")
        assert tools and all(t["connector_id"] for t in tools)
        if cid is not None:
            assert all(t["connector_id"] == cid for t in tools)
        # a new grant, made now, does run on the new server
        fresh = await admin.key(await admin.profile([f"{c}__record"]))
        async with agent(stack, fresh) as client:
            assert _text(await client.call_tool(f"{c}__record", {"key": "k"})) == "k:1"
        assert new.trouble.executions == {"k": 1}
