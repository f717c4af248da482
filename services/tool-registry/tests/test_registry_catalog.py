"""Discovery through the proxy, operation facts, selective registration, names and bad input."""

from __future__ import annotations

from mcp.types import ToolAnnotations
from registry_support import ProxyStandIn, Registry, mcp_tool, mcp_upstream, unique

READ = ToolAnnotations(readOnlyHint=True)
DESTRUCTIVE = ToolAnnotations(destructiveHint=True)
STR_ARG = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


def demo_tools() -> list:
    return [
        mcp_tool("echo", "Echo the text back.", STR_ARG, READ),
        mcp_tool("delete_note", "Delete a note by id.", STR_ARG, DESTRUCTIVE),
        mcp_tool("search_pages", "Search pages by title."),
        mcp_tool("create_page", "Create a page."),
        mcp_tool("frobnicate", "Does something."),
        mcp_tool("purge", "Removes everything.", annotations=ToolAnnotations(readOnlyHint=False)),
    ]


async def test_discover_lists_through_the_proxy_with_operation_facts(registry: Registry, proxy: ProxyStandIn) -> None:
    c = unique()
    async with mcp_upstream(demo_tools()) as up:
        proxy.upstreams[c] = up.url
        found = await registry.ok("POST", f"/v1/connectors/{c}/discover")
    by = {t["name"]: t for t in found["tools"]}
    assert set(by) == {"echo", "delete_note", "search_pages", "create_page", "frobnicate", "purge"}
    assert {n: t["operation"] for n, t in by.items()} == {
        "echo": "read",  # readOnlyHint
        "delete_note": "write",  # destructiveHint
        "search_pages": "read",  # name
        "create_page": "write",  # name
        "frobnicate": "write",  # unknown: fail safe
        "purge": "write",  # readOnlyHint false
    }
    assert by["echo"]["suggested_name"] == f"{c}__echo"
    assert by["echo"]["input_schema"] == STR_ARG
    assert by["echo"]["annotations"]["readOnlyHint"] is True
    assert not any(t["registered"] for t in found["tools"])
    # the registry asked the proxy, never the upstream
    assert any(r.connector == c for r in proxy.requests)


async def test_register_some_tools_with_overrides_then_discover_marks_them(
    registry: Registry, proxy: ProxyStandIn
) -> None:
    c = unique()
    async with mcp_upstream(demo_tools()) as up:
        proxy.upstreams[c] = up.url
        reg = await registry.ok(
            "POST",
            f"/v1/connectors/{c}/tools",
            json={
                "tools": [
                    {"name": "echo"},
                    {"name": "frobnicate", "operation": "read", "auto_approve": False, "favorite": True},
                    {"name": "search_pages", "deferred": True},
                ]
            },
        )
        assert sorted(reg["registered"]) == sorted([f"{c}__echo", f"{c}__frobnicate", f"{c}__search_pages"])
        found = await registry.ok("POST", f"/v1/connectors/{c}/discover")
    assert {t["name"] for t in found["tools"] if t["registered"]} == {"echo", "frobnicate", "search_pages"}
    t = await registry.ok("GET", f"/v1/tools/{c}__frobnicate")
    assert (t["operation"], t["auto_approve"], t["favorite"], t["deferred"], t["enabled"]) == (
        "read",
        False,
        True,
        False,
        True,
    )
    assert t["connector"] == c and t["upstream_name"] == "frobnicate"
    listed = await registry.ok("GET", "/v1/tools", params={"connector": c, "deferred": "true"})
    assert [x["name"] for x in listed] == [f"{c}__search_pages"]
