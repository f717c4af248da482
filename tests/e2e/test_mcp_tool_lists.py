"""tools/list as agents get it (issue 16 items 6-9): the upstream's metadata kept, list_changed
sent to every session whose list changed on every replica, tool_search unlocks shared by the
replicas, and upstream names MCP does not allow registered under a name the admin gives."""

from __future__ import annotations

import asyncio
from typing import Any

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from support.admin import admin_client, agent
from support.replicas import second_proxy
from support.upstream import catalog_upstream
from warden_cli.embedded import Stack

pytestmark = pytest.mark.e2e

_OUT = {"type": "object", "properties": {"pages": {"type": "integer"}}, "required": ["pages"]}
_ICON = {"src": "https://example.com/pdf.png", "mimeType": "image/png", "sizes": ["48x48"]}


def _catalog() -> dict[str, dict[str, Any]]:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    return {
        "get_report": {
            "description": "Get a report",
            "input_schema": schema,
            "title": "Report reader",
            "output_schema": _OUT,
            "icons": [_ICON],
            "meta": {"com.example/team": "docs"},
            "annotations": {"readOnlyHint": True, "openWorldHint": False},
        },
        "purge_cache": {
            "description": "Purge the cache",
            "input_schema": schema,
            "annotations": {"readOnlyHint": False, "destructiveHint": True, "title": "Purge"},
        },
        "PDF&URLTool": {"description": "Turn a URL into a PDF", "input_schema": schema},
        "find_orders": {"description": "Find orders", "input_schema": schema},
    }


async def test_tools_list_keeps_the_upstreams_metadata_and_the_registrys_fact(stack: Stack) -> None:
    async with catalog_upstream(_catalog()) as cat, admin_client(stack) as admin:
        c = await admin.connector(cat.url, None)
        await admin.register(c, [{"name": "get_report"}, {"name": "purge_cache"}])
        # the admin knows better: purging this cache only reads (item 6: the fact reaches the agent)
        await admin.req("PATCH", "registry", f"/v1/tools/{c}__purge_cache", json={"operation": "read"})
        key = await admin.key(await admin.profile([f"{c}__*"]))
        for mode in ("auto", "legacy"):
            async with agent(stack, key, mode=mode) as client:
                tools = {t.name: t for t in (await client.list_tools()).tools}
                report = tools[f"{c}__get_report"]
                assert report.title == "Report reader"
                assert report.output_schema == _OUT
                assert [i.model_dump(mode="json", by_alias=True, exclude_none=True) for i in report.icons or []] == [
                    _ICON
                ]
                assert report.meta == {"com.example/team": "docs"}
                assert report.annotations is not None and report.annotations.read_only_hint is True
                assert report.annotations.open_world_hint is False
                purge = tools[f"{c}__purge_cache"].annotations
                assert purge is not None and purge.title == "Purge"
                assert purge.read_only_hint is True and purge.destructive_hint is None


async def test_an_upstream_name_mcp_does_not_allow_is_governed_under_a_local_name(stack: Stack) -> None:
    async with catalog_upstream(_catalog()) as cat, admin_client(stack) as admin:
        c = await admin.connector(cat.url, None)
        found = {t["name"]: t for t in (await admin.req("POST", "registry", f"/v1/connectors/{c}/discover"))["tools"]}
        bad = found["PDF&URLTool"]
        assert bad["name_valid"] is False and bad["suggested_local_name"] == "PDF_URLTool"
        out = await admin.req("POST", "registry", f"/v1/connectors/{c}/tools", json={})
        assert "local_name" in next(s["reason"] for s in out["skipped"] if s["name"] == "PDF&URLTool")
        assert await admin.register(c, [{"name": "PDF&URLTool", "local_name": "pdf_from_url"}]) == [
            f"{c}__pdf_from_url"
        ]
        tool = await admin.req("GET", "registry", f"/v1/tools/{c}__pdf_from_url")
        assert tool["upstream_name"] == "PDF&URLTool" and tool["local_name"] == "pdf_from_url"
        key = await admin.key(await admin.profile([f"{c}__pdf_from_url"]))
        async with agent(stack, key) as client:
            assert [t.name for t in (await client.list_tools()).tools] == [f"{c}__pdf_from_url"]
            got = await client.call_tool(f"{c}__pdf_from_url", {"q": "https://example.com"})
            assert not got.is_error, got
        assert cat.called[-1] == "PDF&URLTool"  # called upstream by its own name
        # and a refresh keeps it matched to its upstream tool (not missing, not drifted)
        refreshed = await admin.req("POST", "registry", f"/v1/connectors/{c}/refresh")
        assert refreshed["missing"] == [] and refreshed["drifted"] == []


async def test_list_changed_reaches_every_session_whose_list_changed_on_every_replica(stack: Stack) -> None:
    async with (
        catalog_upstream(_catalog()) as cat,
        admin_client(stack) as admin,
        second_proxy(stack) as second,
    ):
        c = await admin.connector(cat.url, None)
        await admin.register(c, [{"name": "get_report"}, {"name": "find_orders"}])
        p = await admin.profile([f"{c}__get_report"])
        other = await admin.profile([f"{c}__get_report"])
        key, other_key = await admin.key(p), await admin.key(other)
        changed = {"a": asyncio.Event(), "b": asyncio.Event(), "other": asyncio.Event()}

        def on(name: str) -> Any:
            async def handler(message: Any) -> None:
                if isinstance(message, types.ToolListChangedNotification):
                    changed[name].set()

            return handler

        async with (
            agent(stack, key, mode="legacy", message_handler=on("a"), cache=None) as a,
            agent(stack, key, base_url=second, mode="legacy", message_handler=on("b"), cache=None) as b,
            agent(stack, other_key, mode="legacy", message_handler=on("other"), cache=None) as o,
        ):
            for client in (a, b, o):
                caps = client.server_capabilities.tools
                assert caps is not None and caps.list_changed is True
                assert [t.name for t in (await client.list_tools()).tools] == [f"{c}__get_report"]
            # grant: both sessions of profile p are told, on both replicas; the other profile is not
            g = await admin.req(
                "POST", "registry", f"/v1/profiles/{p}/grants", json={"tool": f"{c}__find_orders", "reason": "t"}
            )
            async with asyncio.timeout(20):
                await changed["a"].wait()
                await changed["b"].wait()
            for client in (a, b):
                names = {t.name for t in (await client.list_tools()).tools}
                assert names == {f"{c}__get_report", f"{c}__find_orders"}
            # disable (a tool both profiles see): every session
            for e in changed.values():
                e.clear()
            await admin.req("PATCH", "registry", f"/v1/tools/{c}__get_report", json={"enabled": False})
            async with asyncio.timeout(20):
                for e in changed.values():
                    await e.wait()
            assert [t.name for t in (await o.list_tools()).tools] == []
            # revoke
            changed["a"].clear()
            await admin.req("DELETE", "registry", f"/v1/profiles/{p}/grants/{g['id']}")
            async with asyncio.timeout(20):
                await changed["a"].wait()
            assert [t.name for t in (await a.list_tools()).tools] == []


async def test_tool_search_unlocks_are_seen_by_every_replica_and_limits_are_declared(stack: Stack) -> None:
    async with (
        catalog_upstream(_catalog()) as cat,
        admin_client(stack) as admin,
        second_proxy(stack) as second,
    ):
        c = await admin.connector(cat.url, None)
        await admin.register(c, [{"name": "get_report"}, {"name": "find_orders", "deferred": True}])
        key = await admin.key(await admin.profile([f"{c}__*"]))
        deferred = f"{c}__find_orders"
        # a deferred tool may be called by name before any search, by stateless and session clients alike
        for mode in ("auto", "legacy"):
            async with agent(stack, key, mode=mode, cache=None) as client:
                assert not (await client.call_tool(deferred, {"q": "before"})).is_error
        async with (
            agent(stack, key, cache=None) as a,
            agent(stack, key, base_url=second, cache=None) as b,
        ):
            listed = {t.name: t for t in (await a.list_tools()).tools}
            assert deferred not in listed
            search = listed["tool_search"].input_schema
            assert search["properties"]["query"]["maxLength"] == 1000
            assert search["properties"]["k"]["maximum"] == 20
            with pytest.raises(MCPError, match="at most 1000 characters"):
                await a.call_tool("tool_search", {"query": "x" * 1001})
            with pytest.raises(MCPError, match="an integer from 1 to 20"):
                await a.call_tool("tool_search", {"query": "orders", "k": 21})
            found = await a.call_tool("tool_search", {"query": "find orders"})
            assert deferred in {t["name"] for t in (found.structured_content or {})["tools"]}
            # the unlock is in Postgres: the other replica lists it for the same stateless client
            assert deferred in {t.name for t in (await b.list_tools()).tools}
        # a session-ful client's unlocks are its own session's
        async with agent(stack, key, mode="legacy", cache=None) as s:
            assert deferred not in {t.name for t in (await s.list_tools()).tools}
            await s.call_tool("tool_search", {"query": "find orders"})
            assert deferred in {t.name for t in (await s.list_tools()).tools}
