"""Profiles and grants fail closed, over NATS (as the proxy asks) and HTTP."""

from __future__ import annotations

import pytest
from mcp.types import ToolAnnotations
from registry_support import Events, ProxyStandIn, Registry, mcp_tool, mcp_upstream, unique
from warden_common.bus import Bus
from warden_common.contracts import (
    REGISTRY_RESOLVE,
    REGISTRY_SEARCH,
    REGISTRY_VISIBLE,
    ResolveRequest,
    SearchRequest,
    VisibleRequest,
)
from warden_common.errors import Forbidden

READ = ToolAnnotations(readOnlyHint=True)
OBJ = {"type": "object", "properties": {"id": {"type": "string"}}}


def tools() -> list:
    return [
        mcp_tool("get_page", "Get one page by id.", OBJ, READ),
        mcp_tool("search_pages", "Search pages by text.", OBJ, READ),
        mcp_tool("delete_page", "Delete a page.", OBJ, ToolAnnotations(destructiveHint=True)),
        mcp_tool("create_page", "Create a new page.", OBJ),
    ]


async def connector_with_tools(registry: Registry, proxy: ProxyStandIn, body: dict | None = None) -> str:
    c = unique()
    async with mcp_upstream(tools()) as up:
        proxy.upstreams[c] = up.url
        await registry.ok("POST", f"/v1/connectors/{c}/tools", json=body or {})
    return c


async def profile(registry: Registry, *grants: str, read_only: bool = False) -> str:
    p = unique("p")
    await registry.ok("POST", "/v1/profiles", json={"name": p, "description": "test"})
    for g in grants:
        await registry.ok("POST", f"/v1/profiles/{p}/grants", json={"tool": g, "read_only": read_only, "reason": "t"})
    return p


async def names_visible(bus: Bus, p: str) -> list[str]:
    return [t.name for t in (await bus.request(REGISTRY_VISIBLE, VisibleRequest(profile=p))).tools]


async def test_registered_tools_are_invisible_until_granted(registry: Registry, proxy: ProxyStandIn, bus: Bus) -> None:
    c = await connector_with_tools(registry, proxy)
    p = await profile(registry)
    assert await names_visible(bus, p) == []
    for name in ("get_page", "delete_page"):
        with pytest.raises(Forbidden):
            await bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=p, tool=f"{c}__{name}"))
    # an unknown tool reads like an ungranted one
    with pytest.raises(Forbidden) as unknown:
        await bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=p, tool=f"{c}__nope"))
    assert "not available" in unknown.value.message
    # a profile that does not exist sees nothing either
    assert await names_visible(bus, unique("ghost")) == []
    r = await registry.http.get(f"/v1/profiles/{p}/resolve/{c}__get_page")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


async def test_patterns_and_read_only_grants(registry: Registry, proxy: ProxyStandIn, bus: Bus) -> None:
    c = await connector_with_tools(registry, proxy)
    everything = await profile(registry, f"{c}__*")
    readers = await profile(registry, f"{c}__*", read_only=True)
    one = await profile(registry, f"{c}__get_page")
    assert sorted(await names_visible(bus, everything)) == sorted(
        f"{c}__{n}" for n in ("get_page", "search_pages", "delete_page", "create_page")
    )
    assert sorted(await names_visible(bus, readers)) == [f"{c}__get_page", f"{c}__search_pages"]
    assert await names_visible(bus, one) == [f"{c}__get_page"]
    with pytest.raises(Forbidden) as ro:
        await bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=readers, tool=f"{c}__delete_page"))
    assert "read-only" in ro.value.message
    r = await bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=one, tool=f"{c}__get_page"))
    assert (r.connector, r.upstream_name, r.operation, r.auto_approve, r.schema_valid) == (
        c,
        "get_page",
        "read",
        True,
        True,
    )
    assert r.input_schema == OBJ
    # a pattern for another connector grants nothing here
    other = await profile(registry, "zz__*")
    assert await names_visible(bus, other) == []


async def test_revoke_takes_effect_at_once_and_is_announced(
    registry: Registry, proxy: ProxyStandIn, bus: Bus, events: Events
) -> None:
    c = await connector_with_tools(registry, proxy)
    p = await profile(registry)
    g = await registry.ok("POST", f"/v1/profiles/{p}/grants", json={"tool": f"{c}__get_page", "reason": "ticket 42"})
    added = await events.wait(lambda e: e.type == "grant.added" and e.refs.profile == p)
    assert added.data["reason"] == "ticket 42" and added.actor is not None and added.actor.kind == "admin"
    assert await names_visible(bus, p) == [f"{c}__get_page"]
    await bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=p, tool=f"{c}__get_page"))
    await registry.ok("DELETE", f"/v1/profiles/{p}/grants/{g['id']}")
    # the very next question is refused: no waiting for a cache
    with pytest.raises(Forbidden):
        await bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=p, tool=f"{c}__get_page"))
    assert await names_visible(bus, p) == []
    revoked = await events.wait(lambda e: e.type == "grant.revoked" and e.refs.profile == p)
    assert revoked.refs.tool == f"{c}__get_page" and revoked.source == "registry"
    shown = await registry.ok("GET", f"/v1/profiles/{p}")
    assert shown["grants"] == []


async def test_disabled_and_deferred_tools(registry: Registry, proxy: ProxyStandIn, bus: Bus, events: Events) -> None:
    c = await connector_with_tools(
        registry,
        proxy,
        {"tools": [{"name": "get_page"}, {"name": "search_pages", "deferred": True}, {"name": "create_page"}]},
    )
    p = await profile(registry, f"{c}__*")
    vis = await bus.request(REGISTRY_VISIBLE, VisibleRequest(profile=p))
    assert [t.name for t in vis.tools] == [f"{c}__create_page", f"{c}__get_page", "tool_search"]
    assert vis.has_deferred
    search_tool = vis.tools[-1]
    assert set(search_tool.input_schema["properties"]) == {"query", "k"}
    assert search_tool.input_schema["properties"]["query"]["type"] == "string"
    assert search_tool.input_schema["properties"]["k"]["type"] == "integer"
    deferred = await bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=p, tool=f"{c}__search_pages"))
    assert deferred.deferred is True
    await registry.ok("PATCH", f"/v1/tools/{c}__create_page", json={"enabled": False})
    await events.wait(lambda e: e.type == "tool.updated" and e.refs.tool == f"{c}__create_page")
    assert await names_visible(bus, p) == [f"{c}__get_page", "tool_search"]
    with pytest.raises(Forbidden) as off:
        await bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=p, tool=f"{c}__create_page"))
    assert "disabled" in off.value.message
    # favorites come first
    await registry.ok("PATCH", f"/v1/tools/{c}__create_page", json={"enabled": True, "favorite": True})
    assert await names_visible(bus, p) == [f"{c}__create_page", f"{c}__get_page", "tool_search"]


async def test_search_never_returns_a_tool_the_profile_may_not_see(
    registry: Registry, proxy: ProxyStandIn, bus: Bus
) -> None:
    c = unique()
    catalog = [
        mcp_tool("send_invoice", "Send an invoice to a customer by email.", OBJ),
        mcp_tool("refund_payment", "Refund a card payment.", OBJ),
        mcp_tool("list_customers", "List customers.", OBJ, READ),
        mcp_tool("export_invoices", "Export every invoice as CSV.", OBJ, READ),
    ]
    async with mcp_upstream(catalog) as up:
        proxy.upstreams[c] = up.url
        await registry.ok(
            "POST", f"/v1/connectors/{c}/tools", json={"tools": [{"name": t.name, "deferred": True} for t in catalog]}
        )
    p = await profile(registry, f"{c}__send_invoice", f"{c}__list_customers")
    readers = await profile(registry, f"{c}__*", read_only=True)
    res = await bus.request(
        REGISTRY_SEARCH, SearchRequest(profile=p, query="refund a payment or email an invoice", k=10)
    )
    found = [t.name for t in res.tools]
    assert f"{c}__send_invoice" in found
    assert f"{c}__refund_payment" not in found and f"{c}__export_invoices" not in found
    assert set(found) <= {f"{c}__send_invoice", f"{c}__list_customers"}
    res = await bus.request(REGISTRY_SEARCH, SearchRequest(profile=readers, query="invoice refund payment", k=10))
    assert {t.name for t in res.tools} <= {f"{c}__list_customers", f"{c}__export_invoices"}
    assert f"{c}__export_invoices" in {t.name for t in res.tools}
    nobody = await profile(registry)
    res = await bus.request(REGISTRY_SEARCH, SearchRequest(profile=nobody, query="invoice", k=10))
    assert res.tools == []
    http = await registry.ok("POST", f"/v1/profiles/{p}/search", json={"query": "invoice", "k": 3})
    assert http["tools"][0]["name"] == f"{c}__send_invoice"
    assert {t["name"] for t in http["tools"]} <= {f"{c}__send_invoice", f"{c}__list_customers"}


async def test_profiles_crud_and_errors(registry: Registry, events: Events) -> None:
    p = unique("p")
    created = await registry.ok("POST", "/v1/profiles", json={"name": p, "description": "support agents"})
    assert created["name"] == p and created["grants"] == []
    r = await registry.http.post("/v1/profiles", json={"name": p})
    assert r.status_code == 409
    r = await registry.http.post("/v1/profiles", json={"name": "Bad Name"})
    assert r.status_code == 400
    r = await registry.http.post(f"/v1/profiles/{unique('nope')}/grants", json={"tool": "a__b", "reason": "test"})
    assert r.status_code == 404
    r = await registry.http.post(f"/v1/profiles/{p}/grants", json={"tool": "a b; drop", "reason": "test"})
    assert r.status_code == 400
    r = await registry.http.delete(f"/v1/profiles/{p}/grants/not-a-uuid")
    assert r.status_code == 404
    assert p in [x["name"] for x in await registry.ok("GET", "/v1/profiles")]
    await registry.ok("DELETE", f"/v1/profiles/{p}")
    assert (await registry.http.get(f"/v1/profiles/{p}")).status_code == 404
    await events.wait(lambda e: e.type == "profile.deleted" and e.refs.profile == p)
    assert events.of("profile.created", profile=p)


async def test_every_route_wants_the_admin_token(registry: Registry) -> None:
    for method, path in [
        ("GET", "/v1/tools"),
        ("POST", "/v1/connectors/x/discover"),
        ("GET", "/v1/profiles"),
        ("GET", "/v1/profiles/x/visible"),
    ]:
        r = await registry.http.request(method, path, headers={"Authorization": "Bearer wrong-token-000000"})
        assert r.status_code == 401, path
    assert (await registry.http.get("/healthz", headers={"Authorization": ""})).status_code == 200
