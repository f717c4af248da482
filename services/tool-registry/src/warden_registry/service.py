"""The registry's logic: discovery through the proxy, registration, refresh and drift, and the
answers the proxy asks for; the admin's tools, connector settings, profiles and grants are in
`curation.py` (a mixin of `Registry`). No FastAPI, no NATS handlers.

Every change publishes an event (refs.tool / refs.profile / refs.connector) and drops the
access snapshot; other replicas and the proxy drop theirs when the event reaches them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from warden_common.bus import Bus
from warden_common.contracts import (
    UPSTREAM_LIST_TOOLS,
    Actor,
    EventRefs,
    EventType,
    ListUpstreamTools,
    ProfileConnectors,
    ResolvedTool,
    SearchResult,
    UpstreamTool,
    VisibleTools,
)

from warden_registry.access import Access, Snapshot
from warden_registry.catalog import check_schema, classify, clean_description, pin_hash, tool_name, valid_mcp_name
from warden_registry.curation import Curation, _tool_out
from warden_registry.errors import BadInput, Conflict, NotFound, WardenError
from warden_registry.models import (
    DiscoveredTool,
    RefreshOut,
    RegisterBody,
    RegisterOut,
    Skipped,
    ToolOut,
    ToolSelection,
)
from warden_registry.removal import Removal
from warden_registry.searching import Engine, Finder, SearchDoc
from warden_registry.store import Store

__all__ = ["Registry"]

log = logging.getLogger(__name__)
_MAX_PAGES = 1000
_OWN_EVENTS = 100_000
_PER_TOOL_EVENTS = 100
_EVENT_BATCH = 200


_METADATA = ("title", "output_schema", "icons", "meta")


def _metadata(u: UpstreamTool) -> dict[str, Any]:
    return {k: getattr(u, k) for k in _METADATA}


def _suggest(upstream: str) -> str:
    """A local name within MCP's rules for an upstream name outside them (`PDF&URLTool` -> `PDF_URLTool`)."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_.-]", "_", upstream)).strip("_")[:100] or "tool"


def _by_name(listing: Sequence[UpstreamTool]) -> tuple[dict[str, UpstreamTool], list[str]]:
    """The listing by name, first occurrence kept; and the names listed more than once."""
    out: dict[str, UpstreamTool] = {}
    dupes: list[str] = []
    for u in listing:
        if u.name in out:
            dupes.append(u.name)
        else:
            out[u.name] = u
    return out, dupes


class Registry(Curation, Removal):
    """Discovery, registration, refresh and drift, and the proxy's answers; the admin's
    tools, connector settings, profiles and grants come from `Curation`; a removed
    connector's tools and grants go through `Removal`."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        engine: Engine,
        *,
        hold_on_drift: bool = True,
        description_cap: int = 2000,
        discovery_timeout_s: float = 60.0,
        discovery_page_size: int = 500,
    ) -> None:
        self.store = store
        self.bus = bus
        self.hold_on_drift = hold_on_drift
        self.description_cap = description_cap
        self.discovery_timeout_s = discovery_timeout_s
        self.discovery_page_size = discovery_page_size
        self.access = Access(self._load)
        self._refresh_locks: dict[str, asyncio.Lock] = {}
        self._live: dict[str, asyncio.Event] = {}
        self.finder = Finder(engine)
        self._own: OrderedDict[str, None] = OrderedDict()

    # -- events and the snapshot ----------------------------------------------------------
    async def _load(self) -> Snapshot:
        tools, grants, cache_off, naming = await self.store.snapshot_rows()
        return Snapshot.build(tools, grants, cache_off, naming)

    def invalidate(self) -> None:
        self.access.invalidate()
        self.finder.changed()

    def on_event(self, event_id: str | None) -> None:
        """A registry event reached this replica: drop the snapshot, unless this replica sent
        it (it dropped the snapshot when it made the change)."""
        if event_id is not None and event_id in self._own:
            del self._own[event_id]
            return
        self.invalidate()

    def _emit(self, type: EventType, actor: str | None, refs: EventRefs, **data: Any) -> None:
        who = Actor(kind="admin", id=actor) if actor else Actor(kind="system", id="registry")
        event = self.bus.new_event(type, actor=who, refs=refs, data=data)
        self._own[event.id] = None
        while len(self._own) > _OWN_EVENTS:
            self._own.popitem(last=False)
        self.bus.emit(event)

    def _emit_each(
        self, type: EventType, actor: str | None, connector: str, items: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        """One event per tool; past `_PER_TOOL_EVENTS` tools (a 10,000-tool server), one per
        batch naming its tools, so the event stream (and a revocation queued behind it) is
        not flooded."""
        if len(items) <= _PER_TOOL_EVENTS:
            for name, data in items:
                self._emit(type, actor, EventRefs(connector=connector, tool=name), **data)
            return
        for i in range(0, len(items), _EVENT_BATCH):
            batch = items[i : i + _EVENT_BATCH]
            self._emit(
                type,
                actor,
                EventRefs(connector=connector),
                count=len(batch),
                tools=[{"name": name, **data} for name, data in batch],
            )

    # -- answers for the proxy ----------------------------------------------------------
    async def _snapshot_for(self, profile: str) -> Snapshot:
        """The snapshot, after listing cache-off connectors the profile uses from the upstream."""
        snap = await self.access.snapshot()
        live = snap.live_connectors(profile)
        if not live:
            return snap
        await asyncio.gather(*(self._sync_live(c) for c in sorted(live)))
        return await self.access.snapshot()

    async def _sync_live(self, connector: str) -> None:
        """Refresh one cache-off connector; concurrent askers share one listing."""
        running = self._live.get(connector)
        if running is not None:
            await running.wait()
            return
        done = self._live[connector] = asyncio.Event()
        try:
            await self.refresh(connector, None, live=True)
        except WardenError as e:
            log.warning("live listing of %s failed (%s); answering from the stored listing", connector, e.message)
        finally:
            del self._live[connector]
            done.set()

    async def visible(self, profile: str) -> VisibleTools:
        return (await self._snapshot_for(profile)).cut(profile).answer

    async def resolve(self, profile: str, name: str) -> ResolvedTool:
        return (await self.access.snapshot()).resolve(profile, name)

    async def connectors_of(self, profile: str) -> ProfileConnectors:
        return (await self.access.snapshot()).connectors(profile)

    async def search(self, profile: str, query: str, k: int) -> SearchResult:
        snap = await self._snapshot_for(profile)
        cut = snap.cut(profile)
        usable = {e.name: e for e in cut.usable}
        if not usable:
            return SearchResult(tools=[], mode=self.finder.engine.mode)
        names, mode = await self.finder.search(snap.catalog_key, snap.search_docs, query, k, usable.keys())
        found = [cut.view(usable[n]) for n in names if n in usable][:k]  # never a tool the profile may not see
        return SearchResult(tools=found, mode=mode)

    async def catalog(self) -> tuple[int, list[SearchDoc]]:
        """The current catalog, for the search indexer."""
        snap = await self.access.snapshot()
        return snap.catalog_key, snap.search_docs()

    # -- discovery and registration -------------------------------------------------------
    async def list_upstream(self, connector: str, jwe: str | None = None) -> tuple[list[UpstreamTool], str | None]:
        """Every tool of the connector, page by page through the proxy (NATS messages are
        capped), and the id of the connector that answered (None from an older proxy).
        `jwe`: a site token the admin supplied, for a jwt_passthrough connector."""
        tools: list[UpstreamTool] = []
        cursor: str | None = None
        connector_id: str | None = None
        for _ in range(_MAX_PAGES):
            page = await self.bus.request(
                UPSTREAM_LIST_TOOLS,
                ListUpstreamTools(connector=connector, page_size=self.discovery_page_size, cursor=cursor, jwe=jwe),
                timeout=self.discovery_timeout_s,
            )
            if connector_id is not None and page.connector_id != connector_id:
                raise Conflict(f"connector {connector} was replaced while it was being listed; list it again")
            connector_id = page.connector_id
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                return tools, connector_id
        raise BadInput(f"{connector} lists more than {_MAX_PAGES} pages of tools; refusing to continue")

    async def _alias(self, connector: str, alias: str | None = None) -> str:
        if alias:
            return alias
        s = await self.store.connector_settings(connector)
        return str(s["alias"]) if s is not None and s["alias"] else connector

    async def discover(
        self, connector: str, actor: str | None, alias: str | None = None, jwe: str | None = None
    ) -> list[DiscoveredTool]:
        upstream, connector_id = await self.list_upstream(connector, jwe)
        listing, dupes = _by_name(upstream)
        await self.check_connector_id(connector, connector_id, await self.store.tools_of(connector))
        alias = await self._alias(connector, alias)
        mine = {r["upstream_name"] for r in await self.store.tools_of(connector)}
        if dupes:
            log.warning("%s lists %d tool names more than once; the first of each is used", connector, len(dupes))
        self._emit(EventType.tools_discovered, actor, EventRefs(connector=connector), count=len(listing))
        out = []
        for u in listing.values():
            suggested = tool_name(alias, u.name)
            valid = valid_mcp_name(suggested)
            out.append(
                DiscoveredTool(
                    name=u.name,
                    title=u.title,
                    suggested_local_name=None if valid else _suggest(u.name),
                    description=clean_description(u.description, self.description_cap),
                    input_schema=u.input_schema,
                    annotations=u.annotations,
                    operation=classify(u.name, u.description, u.annotations),
                    suggested_name=suggested,
                    name_valid=valid,
                    registered=u.name in mine,
                    schema_valid=check_schema(u.input_schema),
                )
            )
        return out

    async def register(self, connector: str, body: RegisterBody, actor: str, jwe: str | None = None) -> RegisterOut:
        upstream, connector_id = await self.list_upstream(connector, jwe)
        listing, dupes = _by_name(upstream)
        # tools of a removed connector of this name (its event not yet seen) go first
        await self.check_connector_id(connector, connector_id, await self.store.tools_of(connector))
        settings = await self.store.connector_settings(connector)
        alias = await self._alias(connector, body.alias)
        auto_default = body.auto_approve_default
        if auto_default is None:
            auto_default = bool(settings["auto_approve_default"]) if settings is not None else True
        existing = {r["upstream_name"]: r["name"] for r in await self.store.tools_of(connector)}
        skipped = [Skipped(name=n, reason="listed more than once by the upstream; the first is used") for n in dupes]
        chosen: list[tuple[UpstreamTool, ToolSelection | None]]
        if body.tools is None:
            chosen = [(u, None) for u in listing.values() if u.name not in existing]
        else:
            asked = [s.name for s in body.tools]
            twice = sorted({n for n in asked if asked.count(n) > 1}) if len(set(asked)) != len(asked) else []
            if twice:
                raise BadInput(f"listed more than once: {', '.join(twice[:10])}")
            absent = [n for n in asked if n not in listing]
            if absent:
                raise BadInput(f"{connector} does not offer: {', '.join(absent[:10])}", details={"names": absent[:100]})
            again = [existing[n] for n in asked if n in existing]
            if again:
                raise Conflict(
                    f"already registered: {', '.join(again[:10])} (unregister it first)",
                    details={"names": again[:100]},
                )
            chosen = [(listing[s.name], s) for s in body.tools]

        rows: list[tuple[Any, ...]] = []
        local_names = [s.local_name for s in body.tools or () if s.local_name]
        if len(set(local_names)) != len(local_names):
            raise BadInput("two tools were given the same local_name")
        for u, sel in chosen:
            local = sel.local_name if sel is not None and sel.local_name else None
            name = tool_name(alias, local or u.name)
            if not valid_mcp_name(name):
                why = f"{name!r} is not a valid MCP tool name (1-128 characters of A-Z a-z 0-9 _ . -)"
                if local is None:
                    why += f"; register it with a local_name of those characters (for example {_suggest(u.name)!r})"
                if sel is None:
                    skipped.append(Skipped(name=u.name, reason=why))
                    continue
                raise BadInput(why)
            desc = clean_description(u.description, self.description_cap)
            op = sel.operation if sel is not None and sel.operation else classify(u.name, u.description, u.annotations)
            auto = sel.auto_approve if sel is not None and sel.auto_approve is not None else auto_default
            rows.append(
                (
                    name,
                    connector,
                    alias,
                    u.name,
                    desc,
                    u.input_schema,
                    u.annotations,
                    op,
                    auto,
                    bool(sel and sel.deferred),
                    bool(sel and sel.favorite),
                    check_schema(u.input_schema),
                    pin_hash(u.name, desc, u.input_schema),
                    actor,
                    connector_id,
                    sel.approver if sel is not None else None,
                    u.title,
                    u.output_schema,
                    u.icons,
                    u.meta,
                    local,
                )
            )
        names = [r[0] for r in rows]
        if names:
            taken = await self.store.names_taken(names)
            if taken:
                shown = ", ".join(sorted(taken)[:10])
                raise Conflict(
                    f"already registered: {shown} (the name is taken; register under another alias)",
                    details={"names": sorted(taken)[:100]},
                )
            await self.store.insert_tools(rows)
        changed: dict[str, Any] = {}
        if settings is None or not settings["alias"]:
            changed["alias"] = alias
        if body.auto_approve_default is not None:
            changed["auto_approve_default"] = body.auto_approve_default
        if body.approver_default is not None:
            changed["approver_default"] = body.approver_default
        if body.cache_enabled is not None:
            changed["cache_enabled"] = body.cache_enabled
        if changed:
            await self.store.set_connector_settings(connector, **changed)
        self.invalidate()
        self._emit_each(
            EventType.tool_registered,
            actor,
            connector,
            [
                (
                    r[0],
                    {
                        "upstream_name": r[3],
                        "operation": r[7],
                        "auto_approve": r[8],
                        "deferred": r[9],
                        "schema_valid": r[11],
                        **({"local_name": r[-1]} if r[-1] else {}),
                    },
                )
                for r in rows
            ],
        )
        return RegisterOut(registered=names, skipped=skipped)

    # -- refresh and drift ------------------------------------------------------------------
    async def refresh(
        self, connector: str, actor: str | None, *, live: bool = False, jwe: str | None = None
    ) -> RefreshOut:
        """List the connector again and compare each registered tool with its pin.

        A changed description or schema flags the tool (`tool.drifted`) and, by setting, holds
        it from agents until re-approved; a listing back to the pin clears the flag; a tool no
        longer listed is hidden until it returns. Replicas refresh a connector one at a time.
        """
        upstream, connector_id = await self.list_upstream(connector, jwe)
        listing, _ = _by_name(upstream)
        # never compare a removed connector's tools with the listing of the one there is now
        await self.check_connector_id(connector, connector_id, await self.store.tools_of(connector))
        out = RefreshOut(drifted=[], restored=[], missing=[], unregistered_upstream=[])
        lock = self._refresh_locks.setdefault(connector, asyncio.Lock())
        async with lock, self.store.connector_lock(connector) as conn:
            rows = await self.store.tools_of(connector, conn)
            changed = False
            for r in rows:
                fields = self._compare(r, listing.get(r["upstream_name"]), out)
                if fields:
                    changed = True
                    await self.store.update_tool(r["name"], fields, conn)
        registered = {r["upstream_name"] for r in rows}
        out.unregistered_upstream = [n for n in listing if n not in registered]
        if not live:
            await self.store.set_connector_settings(connector, refreshed_at=datetime.now(UTC))
        if changed:
            self.invalidate()
        by_name = {r["name"]: r for r in rows}
        self._emit_each(
            EventType.tool_drifted,
            actor,
            connector,
            [(n, {"held": self.hold_on_drift or by_name[n]["held"]}) for n in out.drifted],
        )
        self._emit_each(EventType.tool_updated, actor, connector, [(n, {"drift": "cleared"}) for n in out.restored])
        self._emit_each(
            EventType.tool_updated, actor, connector, [(n, {"missing_upstream": True}) for n in out.missing]
        )
        return out

    def _compare(self, r: Any, u: UpstreamTool | None, out: RefreshOut) -> dict[str, Any]:
        """The fields to change on one registered tool given its current listing."""
        if u is None:
            if not r["missing"]:
                out.missing.append(r["name"])
                return {"missing": True}
            return {}
        fields: dict[str, Any] = {"missing": False} if r["missing"] else {}
        desc = clean_description(u.description, self.description_cap)
        h = pin_hash(u.name, desc, u.input_schema)
        meta = _metadata(u)
        if h == r["pin_hash"]:
            if r["drift"] is not None:
                out.restored.append(r["name"])
                fields |= {"drift": None, "held": False}
            # title, output schema, icons and _meta are not pinned: kept as the upstream has them now
            fields |= {k: v for k, v in meta.items() if r[k] != v}
        elif r["drift"] is None or r["drift"].get("pin_hash") != h:
            out.drifted.append(r["name"])
            fields |= {
                "drift": {
                    "description": desc,
                    "input_schema": u.input_schema,
                    "annotations": u.annotations,
                    **meta,
                    "pin_hash": h,
                    "description_changed": desc != r["description"],
                    "schema_changed": u.input_schema != r["input_schema"],
                    "detected_at": datetime.now(UTC).isoformat(),
                },
                "held": self.hold_on_drift or r["held"],
            }
        return fields

    async def reapprove(self, name: str, actor: str) -> ToolOut:
        r = await self.store.tool(name)
        if r is None:
            raise NotFound(f"no tool named {name}")
        d = r["drift"]
        if d is None:
            raise Conflict(f"tool {name} has no upstream change waiting for approval")
        new = await self.store.update_tool(
            name,
            {
                "description": d["description"],
                "input_schema": d["input_schema"],
                "annotations": d.get("annotations"),
                **{k: d[k] for k in _METADATA if k in d},
                "pin_hash": d["pin_hash"],
                "schema_valid": check_schema(d["input_schema"]),
                "drift": None,
                "held": False,
            },
        )
        self.invalidate()
        self._emit(EventType.tool_reapproved, actor, EventRefs(connector=r["connector"], tool=name))
        return _tool_out(new)
