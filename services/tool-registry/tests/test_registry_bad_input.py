"""Bad input from upstreams and admins: invalid schemas flagged, descriptions cleaned, names
outside MCP's rules refused, collisions refused, a 10,000-tool server."""

from __future__ import annotations

import time

import pytest
from registry_support import Events, ProxyStandIn, Registry, mcp_tool, mcp_upstream, unique
from warden_common.bus import Bus
from warden_common.contracts import REGISTRY_RESOLVE, REGISTRY_VISIBLE, ResolveRequest, VisibleRequest

OBJ = {"type": "object", "properties": {"q": {"type": "string"}}}


async def test_invalid_input_schema_is_stored_flagged_and_resolved_as_invalid(
    registry: Registry, proxy: ProxyStandIn, bus: Bus
) -> None:
    c = unique()
    # what MCP's wire types let through but JSON Schema's metaschema refuses (a non-object
    # schema or non-dict `properties` never leave an SDK server: see test_registry_rules)
    catalog = [
        mcp_tool("bad_props", "Unknown type name.", {"type": "object", "properties": {"a": {"type": "strnig"}}}),
        mcp_tool("bad_min", "Negative minimum.", {"type": "object", "minProperties": -1}),
        mcp_tool("fine", "Fine.", OBJ),
    ]
    async with mcp_upstream(catalog) as up:
        proxy.upstreams[c] = up.url
        found = {t["name"]: t for t in (await registry.ok("POST", f"/v1/connectors/{c}/discover"))["tools"]}
        assert {n: t["schema_valid"] for n, t in found.items()} == {"bad_props": False, "bad_min": False, "fine": True}
        reg = await registry.ok("POST", f"/v1/connectors/{c}/tools", json={})
    assert len(reg["registered"]) == 3
    t = await registry.ok("GET", f"/v1/tools/{c}__bad_props")
    assert t["schema_valid"] is False and t["input_schema"]["properties"]["a"] == {"type": "strnig"}
    p = unique("p")
    await registry.ok("POST", "/v1/profiles", json={"name": p})
    await registry.ok("POST", f"/v1/profiles/{p}/grants", json={"tool": f"{c}__*", "reason": "test"})
    # still visible (flagged), and resolve says so: the proxy refuses the call with a clear error
    vis = await bus.request(REGISTRY_VISIBLE, VisibleRequest(profile=p))
    assert f"{c}__bad_props" in {x.name for x in vis.tools}
    r = await bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=p, tool=f"{c}__bad_props"))
    assert r.schema_valid is False
    r = await bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=p, tool=f"{c}__fine"))
    assert r.schema_valid is True


async def test_oversized_and_control_character_descriptions_are_cleaned(
    registry: Registry, proxy: ProxyStandIn, bus: Bus
) -> None:
    c = unique()
    nasty = "Line\x00one\x1b[31m\u202egnp.exe\u200b\ufeff\n\n\n\nnext " + "x" * 5000
    async with mcp_upstream([mcp_tool("weird", nasty, OBJ)]) as up:
        proxy.upstreams[c] = up.url
        found = (await registry.ok("POST", f"/v1/connectors/{c}/discover"))["tools"][0]
        await registry.ok("POST", f"/v1/connectors/{c}/tools", json={})
    for desc in (found["description"], (await registry.ok("GET", f"/v1/tools/{c}__weird"))["description"]):
        assert len(desc) <= 2000 and desc.endswith("…")
        assert not any(ch in desc for ch in "\x00\x1b\u202e\u200b\ufeff")
        assert desc.startswith("Lineone[31mgnp.exe\n\nnext x")


async def test_names_outside_mcp_rules_and_collisions_are_refused(
    registry: Registry, proxy: ProxyStandIn, events: Events
) -> None:
    c = unique()
    long_name = "t" * 127
    catalog = [mcp_tool("ok_tool", "Fine.", OBJ), mcp_tool("has space", "Bad.", OBJ), mcp_tool(long_name, "Long.", OBJ)]
    async with mcp_upstream(catalog) as up:
        proxy.upstreams[c] = up.url
        found = {t["name"]: t for t in (await registry.ok("POST", f"/v1/connectors/{c}/discover"))["tools"]}
        assert found["ok_tool"]["name_valid"] and not found["has space"]["name_valid"]
        assert not found[long_name]["name_valid"]  # <alias>__ + 127 characters > 128
        # chosen explicitly: refused with a clear 400
        r = await registry.http.post(f"/v1/connectors/{c}/tools", json={"tools": [{"name": "has space"}]})
        assert r.status_code == 400 and "not a valid MCP tool name" in r.json()["error"]["message"]
        # a tool the server does not offer, or listed twice, or a bad alias
        r = await registry.http.post(f"/v1/connectors/{c}/tools", json={"tools": [{"name": "nope"}]})
        assert r.status_code == 400 and "nope" in r.json()["error"]["message"]
        r = await registry.http.post(
            f"/v1/connectors/{c}/tools", json={"tools": [{"name": "ok_tool"}, {"name": "ok_tool"}]}
        )
        assert r.status_code == 400
        for alias in ("Bad Alias!", "a__b", "x" * 49):
            r = await registry.http.post(f"/v1/connectors/{c}/tools", json={"alias": alias})
            assert r.status_code == 400, alias
        r = await registry.http.post("/v1/connectors/Not_A_Connector/tools", json={})
        assert r.status_code == 400
        # all: the valid ones are registered, the others reported
        reg = await registry.ok("POST", f"/v1/connectors/{c}/tools", json={"alias": "shared"})
        assert reg["registered"] == ["shared__ok_tool"]
        assert {s["name"] for s in reg["skipped"]} == {"has space", long_name}
        # again: already registered
        r = await registry.http.post(f"/v1/connectors/{c}/tools", json={"tools": [{"name": "ok_tool"}]})
        assert r.status_code == 409 and "already registered" in r.json()["error"]["message"]
        # registering "all" again adds nothing and is not an error
        assert (await registry.ok("POST", f"/v1/connectors/{c}/tools", json={}))["registered"] == []
        # later registrations keep the connector's alias
        settings = await registry.ok("GET", f"/v1/connectors/{c}")
        assert settings["alias"] == "shared"

        # another connector under the same alias collides: 409, naming the tool
        other = unique()
        proxy.upstreams[other] = up.url
        r = await registry.http.post(
            f"/v1/connectors/{other}/tools", json={"alias": "shared", "tools": [{"name": "ok_tool"}]}
        )
        assert r.status_code == 409 and "shared__ok_tool" in r.json()["error"]["message"]
        # under its own name it is fine
        reg = await registry.ok("POST", f"/v1/connectors/{other}/tools", json={"tools": [{"name": "ok_tool"}]})
        assert reg["registered"] == [f"{other}__ok_tool"]

    # unregister: gone, announced, and only through its own connector
    r = await registry.http.delete(f"/v1/connectors/{other}/tools/shared__ok_tool")
    assert r.status_code == 404
    await registry.ok("DELETE", f"/v1/connectors/{c}/tools/shared__ok_tool")
    assert (await registry.http.get("/v1/tools/shared__ok_tool")).status_code == 404
    await events.wait(lambda e: e.type == "tool.unregistered" and e.refs.tool == "shared__ok_tool")


async def test_patch_and_connector_defaults(registry: Registry, proxy: ProxyStandIn, bus: Bus) -> None:
    c = unique()
    async with mcp_upstream([mcp_tool("send_mail", "Send an email.", OBJ), mcp_tool("get_mail", "Get.", OBJ)]) as up:
        proxy.upstreams[c] = up.url
        await registry.ok(
            "POST",
            f"/v1/connectors/{c}/tools",
            json={"auto_approve_default": False, "tools": [{"name": "send_mail"}]},
        )
        await registry.ok("POST", f"/v1/connectors/{c}/tools", json={"tools": [{"name": "get_mail"}]})
    send = await registry.ok("GET", f"/v1/tools/{c}__send_mail")
    get = await registry.ok("GET", f"/v1/tools/{c}__get_mail")
    assert send["auto_approve"] is False and get["auto_approve"] is False  # the connector's default stays off
    t = await registry.ok("PATCH", f"/v1/tools/{c}__send_mail", json={"auto_approve": True, "operation": "read"})
    assert t["auto_approve"] is True and t["operation"] == "read"
    r = await registry.http.patch(f"/v1/tools/{c}__send_mail", json={"operation": "delete"})
    assert r.status_code == 400
    r = await registry.http.patch(f"/v1/tools/{c}__nope", json={"favorite": True})
    assert r.status_code == 404
    s = await registry.ok("PATCH", f"/v1/connectors/{c}", json={"auto_approve_default": True})
    assert s["auto_approve_default"] is True


@pytest.mark.slow
async def test_a_server_with_10000_tools_registers(registry: Registry, proxy: ProxyStandIn, bus: Bus) -> None:
    c = unique()
    catalog = [
        mcp_tool(f"tool_{i:05d}", f"Tool number {i}: fetch record {i}.", {"type": "object", "properties": {}})
        for i in range(10_000)
    ]
    async with mcp_upstream(catalog) as up:
        proxy.upstreams[c] = up.url
        start = time.monotonic()
        reg = await registry.ok("POST", f"/v1/connectors/{c}/tools", json={})
        took = time.monotonic() - start
        assert len(reg["registered"]) == 10_000
        assert took < 60, took
        pages = [r for r in proxy.requests if r.connector == c]
        assert len(pages) >= 10_000 // registry.settings.discovery_page_size  # paged through NATS
        out = await registry.ok("POST", f"/v1/connectors/{c}/refresh")
        assert out["drifted"] == [] and out["missing"] == []
    listed = await registry.ok("GET", "/v1/tools", params={"connector": c})
    assert len(listed) == 10_000
    p = unique("p")
    await registry.ok("POST", "/v1/profiles", json={"name": p})
    await registry.ok("POST", f"/v1/profiles/{p}/grants", json={"tool": f"{c}__tool_0000*", "reason": "test"})
    vis = await bus.request(REGISTRY_VISIBLE, VisibleRequest(profile=p))
    assert [t.name for t in vis.tools] == [f"{c}__tool_{i:05d}" for i in range(10)]
    start = time.monotonic()
    for i in range(200):
        await bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=p, tool=f"{c}__tool_0000{i % 10}"))
    assert (time.monotonic() - start) / 200 < 0.05  # resolve stays cheap with a big catalog
