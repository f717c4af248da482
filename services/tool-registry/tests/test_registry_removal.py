"""A removed connector's tools and the grants on them go (issue 16, item 0c): on its
`connector.removed` event (a durable JetStream consumer), and when a listing answers for
another connector id than the tools were registered against (the event was missed)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import nats
import pytest
from registry_support import Events, ProxyStandIn, Registry, mcp_tool, mcp_upstream, unique
from warden_common.bus import Bus
from warden_common.contracts import (
    REGISTRY_RESOLVE,
    Actor,
    Event,
    EventRefs,
    EventType,
    ResolveRequest,
    Service,
    events_subject,
)
from warden_common.errors import Forbidden
from warden_registry.removal import doomed_grants

OBJ = {"type": "object", "properties": {"id": {"type": "string"}}}


def _g(tool: str) -> dict:
    return {"id": uuid.uuid4(), "tool": tool, "read_only": False}


def test_a_removal_revokes_the_grants_on_that_connector_only() -> None:
    grants = {
        t: _g(t)
        for t in ("notion__*", "notion__get_page", "notion__never_registered", "*", "*__get_page", "gh__*", "n*")
    }
    doomed = doomed_grants(
        gone=["notion__get_page", "notion__search"],
        grants=list(grants.values()),
        left=["gh__get_page", "gh__list"],
        aliases={"notion"},
    )
    by_id = {g["id"]: t for t, g in grants.items()}
    # its tools by name, its namespace (even a name never registered), a pattern that matched
    # only its tools; not the catalog-wide patterns that still match other connectors' tools
    assert sorted(by_id[i] for i in doomed) == ["n*", "notion__*", "notion__get_page", "notion__never_registered"]


def test_a_catalog_wide_pattern_goes_when_the_removed_connector_was_all_it_matched() -> None:
    star = _g("*")
    assert doomed_grants(["notion__get_page"], [star], [], {"notion"}) == [star["id"]]


async def _setup(registry: Registry, proxy: ProxyStandIn, cid: str) -> tuple[str, str]:
    c = unique()
    proxy.connector_ids[c] = cid
    async with mcp_upstream([mcp_tool("get_page", "Get one page by id.", OBJ)]) as up:
        proxy.upstreams[c] = up.url
        await registry.ok("POST", f"/v1/connectors/{c}/tools", json={})
    p = unique("p")
    await registry.ok("POST", "/v1/profiles", json={"name": p, "description": "t"})
    await registry.ok("POST", f"/v1/profiles/{p}/grants", json={"tool": f"{c}__*", "read_only": False, "reason": "t"})
    return c, p


async def _publish_removal(
    nats_url: str, root: str, connector: str, cid: str | None, at: datetime | None = None
) -> None:
    """A `connector.removed` event on the stream, as connectors publishes it."""
    ev = Event(
        type=EventType.connector_removed,
        source=Service.connectors,
        actor=Actor(kind="admin", id="ops@example.com"),
        refs=EventRefs(connector=connector),
        data={"connector_id": cid} if cid else {},
        **({"time": at} if at else {}),
    )
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(
            events_subject(root, ev), ev.model_dump_json().encode(), headers={"Nats-Msg-Id": ev.id}
        )
    finally:
        await nc.close()


async def test_connector_removed_event_unregisters_tools_and_revokes_grants(
    registry: Registry, proxy: ProxyStandIn, bus: Bus, events: Events, nats_url: str
) -> None:
    old = uuid.uuid4().hex
    c, p = await _setup(registry, proxy, old)
    [tool] = await registry.ok("GET", "/v1/tools", params={"connector": c})
    assert tool["connector_id"] == old
    resolved = await bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=p, tool=f"{c}__get_page"))
    assert resolved.connector_id == old
    # the removal of another connector of this name (another id) leaves these tools alone
    await _publish_removal(nats_url, bus.root, c, uuid.uuid4().hex)
    await _publish_removal(nats_url, bus.root, c, old)
    gone = await events.wait(lambda e: e.type == "tool.unregistered" and e.refs.tool == f"{c}__get_page")
    assert gone.data["reason"] == "connector removed" and gone.data["connector_id"] == old
    assert gone.data["removed_by"] == "ops@example.com"
    revoked = await events.wait(lambda e: e.type == "grant.revoked" and e.refs.profile == p)
    assert revoked.refs.tool == f"{c}__*" and revoked.data["reason"] == "connector removed"
    assert await registry.ok("GET", "/v1/tools", params={"connector": c}) == []
    assert (await registry.ok("GET", f"/v1/profiles/{p}"))["grants"] == []
    with pytest.raises(Forbidden):
        await bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=p, tool=f"{c}__get_page"))


async def test_a_listing_for_another_connector_id_removes_the_stale_tools_first(
    registry: Registry, proxy: ProxyStandIn, events: Events
) -> None:
    c, p = await _setup(registry, proxy, uuid.uuid4().hex)
    new = uuid.uuid4().hex
    proxy.connector_ids[c] = new  # removed and created again; the registry missed the event
    async with mcp_upstream([mcp_tool("get_page", "Get one page by id.", OBJ)]) as up:
        proxy.upstreams[c] = up.url
        found = (await registry.ok("POST", f"/v1/connectors/{c}/discover"))["tools"]
        assert [t["registered"] for t in found] == [False]
        assert (await registry.ok("GET", f"/v1/profiles/{p}"))["grants"] == []
        await registry.ok("POST", f"/v1/connectors/{c}/tools", json={})
    [tool] = await registry.ok("GET", "/v1/tools", params={"connector": c})
    assert tool["connector_id"] == new
    assert (await registry.ok("GET", f"/v1/profiles/{p}"))["grants"] == []
    e = await events.wait(lambda e: e.type == "grant.revoked" and e.refs.profile == p)
    assert e.data["reason"] == "connector removed"


async def test_a_removal_applies_only_to_tools_registered_before_it(
    registry: Registry, proxy: ProxyStandIn, events: Events, nats_url: str
) -> None:
    c, _ = await _setup(registry, proxy, uuid.uuid4().hex)
    # without an id (an older connectors): the tools registered before the event go, not later ones
    await _publish_removal(nats_url, registry.settings.nats.root, c, None, datetime.now(UTC) - timedelta(hours=1))
    marker, _ = await _setup(registry, proxy, uuid.uuid4().hex)
    await _publish_removal(nats_url, registry.settings.nats.root, marker, None)
    # one consumer, in order: once the second removal is applied, the first was too
    await events.wait(lambda e: e.type == "tool.unregistered" and e.refs.connector == marker)
    assert len(await registry.ok("GET", "/v1/tools", params={"connector": c})) == 1
