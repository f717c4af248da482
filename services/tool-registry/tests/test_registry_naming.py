"""A profile's naming setting: bare upstream names while unambiguous, registered names always."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from registry_support import ProxyStandIn, Registry, mcp_tool, mcp_upstream, unique
from warden_common.bus import Bus
from warden_common.contracts import (
    REGISTRY_CONNECTORS,
    REGISTRY_RESOLVE,
    REGISTRY_VISIBLE,
    ProfileConnectorsRequest,
    ResolveRequest,
    VisibleRequest,
)
from warden_common.errors import Forbidden
from warden_registry.access import Snapshot

NOW = datetime.now(UTC)


def _row(alias: str, upstream: str, **kw: Any) -> dict[str, Any]:
    row = {
        "name": f"{alias}__{upstream}",
        "connector": alias,
        "alias": alias,
        "upstream_name": upstream,
        "description": "",
        "input_schema": {"type": "object"},
        "annotations": None,
        "operation": "read",
        "auto_approve": True,
        "deferred": False,
        "favorite": False,
        "enabled": True,
        "schema_valid": True,
        "pin_hash": "x",
        "held": False,
        "missing": False,
        "drift": None,
        "registered_by": "admin",
        "created_at": NOW,
        "updated_at": NOW,
    }
    return row | kw


def _grant(profile: str, tool: str) -> dict[str, Any]:
    return {"profile": profile, "tool": tool, "read_only": False}


def _snapshot() -> Snapshot:
    return Snapshot.build(
        [
            _row("a", "search"),
            _row("b", "search"),
            _row("a", "only_a"),
            _row("a", "tool_search"),
            _row("b", "a__only_a"),  # its bare name is another usable tool's registered name
            _row("a", "later", deferred=True),
            _row("c", "only_a"),  # same upstream name, but not granted to the profile
        ],
        [_grant(p, t) for p in ("bare", "plain") for t in ("a__*", "b__*")],
        naming={"bare": "bare"},
    )


def test_bare_names_only_where_unambiguous_within_the_profile() -> None:
    snap = _snapshot()
    shown = sorted(t.name for t in snap.cut("bare").answer.tools)
    assert shown == ["a__search", "a__tool_search", "b__a__only_a", "b__search", "only_a", "tool_search"]
    assert sorted(t.name for t in snap.cut("plain").answer.tools) == [
        "a__only_a",
        "a__search",
        "a__tool_search",
        "b__a__only_a",
        "b__search",
        "tool_search",
    ]


def test_bare_and_registered_names_both_resolve_to_the_same_tool() -> None:
    snap = _snapshot()
    r = snap.resolve("bare", "only_a")
    assert (r.name, r.connector, r.upstream_name) == ("only_a", "a", "only_a")
    assert snap.resolve("bare", "a__only_a").upstream_name == "only_a"
    assert snap.resolve("bare", "later").deferred  # deferred tools get bare names too
    # a namespaced profile has no bare names; an ambiguous name is not a name
    for profile, name in [("plain", "only_a"), ("bare", "search"), ("nobody", "only_a")]:
        with pytest.raises(Forbidden):
            snap.resolve(profile, name)


def test_connectors_are_those_with_a_usable_granted_tool() -> None:
    snap = _snapshot()
    out = snap.connectors("bare")
    assert [(c.connector, c.alias) for c in out.connectors] == [("a", "a"), ("b", "b")]
    assert out.tool_names == "bare"
    assert snap.connectors("plain").tool_names == "namespaced"
    assert snap.connectors("nobody").connectors == []


async def test_profile_naming_setting_over_http_and_nats(registry: Registry, proxy: ProxyStandIn, bus: Bus) -> None:
    c = unique()
    async with mcp_upstream([mcp_tool("get_page", "Get one page.", {"type": "object"})]) as up:
        proxy.upstreams[c] = up.url
        await registry.ok("POST", f"/v1/connectors/{c}/tools", json={})
    p = unique("p")
    created = await registry.ok("POST", "/v1/profiles", json={"name": p})
    assert created["tool_names"] == "namespaced"
    await registry.ok("POST", f"/v1/profiles/{p}/grants", json={"tool": f"{c}__*", "reason": "test"})

    async def names() -> list[str]:
        return [t.name for t in (await bus.request(REGISTRY_VISIBLE, VisibleRequest(profile=p))).tools]

    assert await names() == [f"{c}__get_page"]
    patched = await registry.ok("PATCH", f"/v1/profiles/{p}", json={"tool_names": "bare"})
    assert patched["tool_names"] == "bare"
    assert await names() == ["get_page"]
    r = await bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=p, tool="get_page"))
    assert (r.connector, r.upstream_name) == (c, "get_page")
    conns = await bus.request(REGISTRY_CONNECTORS, ProfileConnectorsRequest(profile=p))
    assert [x.connector for x in conns.connectors] == [c] and conns.tool_names == "bare"
