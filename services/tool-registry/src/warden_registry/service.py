"""The catalog: discovery through the proxy, registration, drift, profiles and grants, and
the answers the proxy asks for (visible, resolve, search). No FastAPI, no NATS handlers.

Queries run on an in-memory snapshot of tools and grants, rebuilt after any change in any
replica (registry events), so `resolve` on the proxy's hot path does no SQL.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from warden_common.bus import Bus
from warden_common.contracts import (
    UPSTREAM_LIST_TOOLS,
    Actor,
    EventRefs,
    EventType,
    ListUpstreamTools,
    ResolvedTool,
    SearchResult,
    ToolView,
    UpstreamTool,
    VisibleTools,
)

from warden_registry.catalog import check_schema, classify, clean_description, pin_hash, tool_name, valid_mcp_name
from warden_registry.errors import BadInput, Conflict, Forbidden, NotFound
from warden_registry.models import (
    DiscoveredTool,
    GrantCreate,
    GrantOut,
    ProfileCreate,
    ProfileOut,
    RegisterBody,
    ToolOut,
    ToolPatch,
)
from warden_registry.searching import Searcher
from warden_registry.store import Store

__all__ = ["Registry", "TOOL_SEARCH"]

log = logging.getLogger(__name__)

TOOL_SEARCH = ToolView(
    name="tool_search",
    description="Search the tools available to you that are not listed by default. Returns the best matches "
    "with their input schemas; after a search they can be called by name.",
    input_schema={
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "what you want to do, in a few words"},
            "k": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
        },
        "required": ["query"],
    },
)


@dataclass
class _Snapshot:
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)
    grants: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    visible: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = field(default_factory=dict)


def _out(r: Any) -> ToolOut:
    return ToolOut(**{k: r[k] for k in ToolOut.model_fields})


class Registry:
    def __init__(self, store: Store, bus: Bus, *, hold_on_drift: bool, description_cap: int, timeout_s: float) -> None:
        self.store = store
        self.bus = bus
        self.hold_on_drift = hold_on_drift
        self.description_cap = description_cap
        self.timeout_s = timeout_s
        self.searcher = Searcher()
        self._snap: _Snapshot | None = None
        self._lock = asyncio.Lock()

    # -- events and the snapshot ----------------------------------------------------------
    def _emit(self, type: EventType, actor: str | None, refs: EventRefs, **data: Any) -> None:
        self.invalidate()
        self.bus.emit(
            self.bus.new_event(
                type,
                actor=Actor(kind="admin", id=actor) if actor else Actor(kind="system", id="registry"),
                refs=refs,
                data=data,
            )
        )

    def invalidate(self) -> None:
        self._snap = None

    async def _snapshot(self) -> _Snapshot:
        snap = self._snap
        if snap is not None:
            return snap
        async with self._lock:
            if self._snap is None:
                tools = {r["name"]: dict(r) for r in await self.store.all_tools()}
                grants: dict[str, list[dict[str, Any]]] = {}
                for g in await self.store.grants():
                    grants.setdefault(g["profile"], []).append(dict(g))
                self._snap = _Snapshot(tools=tools, grants=grants)
            return self._snap

    @staticmethod
    def _granted(tool: dict[str, Any], grants: list[dict[str, Any]]) -> bool:
        for g in grants:
            if fnmatch.fnmatchcase(tool["name"], g["tool"]) and (not g["read_only"] or tool["operation"] == "read"):
                return True
        return False

    async def _cut(self, profile: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(listed tools, deferred tools) the profile may use: granted, enabled, not held."""
        snap = await self._snapshot()
        hit = snap.visible.get(profile)
        if hit is not None:
            return hit
        grants = snap.grants.get(profile, [])
        listed, deferred = [], []
        for t in snap.tools.values():
            if t["enabled"] and not t["held"] and self._granted(t, grants):
                (deferred if t["deferred"] else listed).append(t)
        snap.visible[profile] = (listed, deferred)
        return listed, deferred

    # -- answers for the proxy ----------------------------------------------------------
    @staticmethod
    def _view(t: dict[str, Any]) -> ToolView:
        return ToolView(
            name=t["name"], description=t["description"], input_schema=t["input_schema"], annotations=t["annotations"]
        )

    async def visible(self, profile: str) -> VisibleTools:
        listed, deferred = await self._cut(profile)
        tools = [self._view(t) for t in listed]
        if deferred:
            tools.append(TOOL_SEARCH)
        return VisibleTools(tools=tools, has_deferred=bool(deferred))

    async def resolve(self, profile: str, name: str) -> ResolvedTool:
        snap = await self._snapshot()
        t = snap.tools.get(name)
        if t is None or not self._granted(t, snap.grants.get(profile, [])):
            # the same answer for "does not exist" and "not yours": nothing leaks
            raise Forbidden(f"tool {name} is not available to profile {profile}")
        if not t["enabled"]:
            raise Forbidden(f"tool {name} is disabled")
        if t["held"]:
            raise Forbidden(f"tool {name} changed upstream and is held until an admin re-approves it")
        return ResolvedTool(
            name=t["name"],
            connector=t["connector"],
            upstream_name=t["upstream_name"],
            description=t["description"],
            input_schema=t["input_schema"],
            operation=t["operation"],
            auto_approve=t["auto_approve"],
            deferred=t["deferred"],
            schema_valid=t["schema_valid"],
        )

    async def search(self, profile: str, query: str, k: int) -> SearchResult:
        _, deferred = await self._cut(profile)
        found = self.searcher.search(query, deferred, k)
        return SearchResult(tools=[self._view(t) for t in found], mode=self.searcher.mode)  # type: ignore[arg-type]

    # -- discovery and registration -------------------------------------------------------
    async def _list_upstream(self, connector: str) -> list[UpstreamTool]:
        res = await self.bus.request(
            UPSTREAM_LIST_TOOLS, ListUpstreamTools(connector=connector), timeout=self.timeout_s
        )
        return res.tools

    async def discover(self, connector: str, alias: str | None = None) -> list[DiscoveredTool]:
        upstream = await self._list_upstream(connector)
        mine = {r["upstream_name"] for r in await self.store.tools_of(connector)}
        self._emit(EventType.tools_discovered, None, EventRefs(connector=connector), count=len(upstream))
        return [
            DiscoveredTool(
                name=u.name,
                description=clean_description(u.description, self.description_cap),
                input_schema=u.input_schema,
                annotations=u.annotations,
                operation=classify(u.name, u.description, u.annotations),  # type: ignore[arg-type]
                suggested_name=tool_name(alias or connector, u.name),
                registered=u.name in mine,
                schema_valid=check_schema(u.input_schema),
            )
            for u in upstream
        ]

    async def register(self, connector: str, body: RegisterBody, actor: str) -> list[str]:
        alias = body.alias or connector
        settings = await self.store.connector_settings(connector)
        auto_default = body.auto_approve_default
        if auto_default is None:
            auto_default = settings["auto_approve_default"] if settings else True
        if body.auto_approve_default is not None or body.cache_enabled is not None or settings is None:
            fields: dict[str, Any] = {"auto_approve_default": auto_default}
            if body.cache_enabled is not None:
                fields["cache_enabled"] = body.cache_enabled
            await self.store.set_connector_settings(connector, **fields)
        upstream = {u.name: u for u in await self._list_upstream(connector)}
        if body.tools is None:
            chosen = [(u, None) for u in upstream.values()]
        else:
            missing = [s.name for s in body.tools if s.name not in upstream]
            if missing:
                raise BadInput(f"not offered by {connector}: {', '.join(missing[:10])}")
            chosen = [(upstream[s.name], s) for s in body.tools]
        rows, names = [], []
        for u, sel in chosen:
            name = tool_name(alias, u.name)
            if not valid_mcp_name(name):
                raise BadInput(f"{name!r} is not a valid MCP tool name (1-128 of A-Z a-z 0-9 _ . -)")
            desc = clean_description(u.description, self.description_cap)
            op = (sel.operation if sel and sel.operation else None) or classify(u.name, u.description, u.annotations)
            auto = sel.auto_approve if sel and sel.auto_approve is not None else auto_default
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
                )
            )
            names.append(name)
        if len(set(names)) != len(names):
            raise Conflict("two tools would get the same name; choose another alias")
        taken = await self.store.names_taken(names)
        if taken:
            raise Conflict(
                f"already registered: {', '.join(sorted(taken)[:10])} (unregister first, or use another alias)"
            )
        await self.store.insert_tools(rows)
        for name, row in zip(names, rows, strict=True):
            self.bus.emit(
                self.bus.new_event(
                    EventType.tool_registered,
                    actor=Actor(kind="admin", id=actor),
                    refs=EventRefs(connector=connector, tool=name),
                    data={"operation": row[7], "auto_approve": row[8], "schema_valid": row[11]},
                )
            )
        self.invalidate()
        return names

    async def refresh(self, connector: str, actor: str | None) -> dict[str, list[str]]:
        """Re-list the connector's tools; changed descriptions or schemas are flagged (and held)."""
        upstream = {u.name: u for u in await self._list_upstream(connector)}
        drifted, updated, gone = [], [], []
        for r in await self.store.tools_of(connector):
            u = upstream.get(r["upstream_name"])
            if u is None:
                gone.append(r["name"])
                continue
            desc = clean_description(u.description, self.description_cap)
            h = pin_hash(u.name, desc, u.input_schema)
            if h == r["pin_hash"]:
                if r["drift"] is not None:  # the server went back to what was approved
                    await self.store.update_tool(r["name"], {"drift": None, "held": False})
                    updated.append(r["name"])
                continue
            drift = {"description": desc, "input_schema": u.input_schema, "annotations": u.annotations, "pin_hash": h}
            await self.store.update_tool(r["name"], {"drift": drift, "held": self.hold_on_drift})
            drifted.append(r["name"])
            self._emit(
                EventType.tool_drifted,
                actor,
                EventRefs(connector=connector, tool=r["name"]),
                held=self.hold_on_drift,
                description_changed=desc != r["description"],
                schema_changed=u.input_schema != r["input_schema"],
            )
        await self.store.set_connector_settings(connector, refreshed_at=datetime.now(UTC))
        self.invalidate()
        return {"drifted": drifted, "updated": updated, "missing_upstream": gone}

    async def reapprove(self, name: str, actor: str) -> ToolOut:
        r = await self.store.tool(name)
        if r is None:
            raise NotFound(f"no tool {name}")
        if r["drift"] is None:
            raise Conflict(f"tool {name} has no pending change to approve")
        d = r["drift"]
        new = await self.store.update_tool(
            name,
            {
                "description": d["description"],
                "input_schema": d["input_schema"],
                "annotations": d.get("annotations"),
                "pin_hash": d["pin_hash"],
                "schema_valid": check_schema(d["input_schema"]),
                "drift": None,
                "held": False,
            },
        )
        self._emit(EventType.tool_reapproved, actor, EventRefs(connector=r["connector"], tool=name))
        return _out(new)

    async def unregister(self, connector: str, name: str, actor: str) -> None:
        r = await self.store.tool(name)
        if r is None or r["connector"] != connector:
            raise NotFound(f"no tool {name} on connector {connector}")
        await self.store.delete_tool(name)
        self._emit(EventType.tool_unregistered, actor, EventRefs(connector=connector, tool=name))

    async def list_tools(self, **f: Any) -> list[ToolOut]:
        out = []
        for r in await self.store.all_tools():
            if f.get("connector") and r["connector"] != f["connector"]:
                continue
            if f.get("q") and f["q"].lower() not in (r["name"] + " " + r["description"]).lower():
                continue
            if any(
                f.get(k) is not None and r[k] != f[k] for k in ("operation", "deferred", "favorite", "enabled", "held")
            ):
                continue
            out.append(_out(r))
        return out

    async def get_tool(self, name: str) -> ToolOut:
        r = await self.store.tool(name)
        if r is None:
            raise NotFound(f"no tool {name}")
        return _out(r)

    async def update_tool(self, name: str, patch: ToolPatch, actor: str) -> ToolOut:
        fields = patch.model_dump(exclude_none=True)
        if not fields:
            return await self.get_tool(name)
        r = await self.store.update_tool(name, fields)
        if r is None:
            raise NotFound(f"no tool {name}")
        self._emit(EventType.tool_updated, actor, EventRefs(connector=r["connector"], tool=name), **fields)
        return _out(r)

    # -- profiles and grants --------------------------------------------------------------
    async def create_profile(self, body: ProfileCreate, actor: str) -> ProfileOut:
        if not await self.store.insert_profile(body.name, body.description, actor):
            raise Conflict(f"profile {body.name!r} exists")
        self._emit(EventType.profile_created, actor, EventRefs(profile=body.name))
        return await self.get_profile(body.name)

    async def get_profile(self, name: str) -> ProfileOut:
        p = await self.store.profile(name)
        if p is None:
            raise NotFound(f"no profile {name!r}")
        grants = [_grant(g) for g in await self.store.grants(name)]
        return ProfileOut(**dict(p), grants=grants)

    async def list_profiles(self) -> list[ProfileOut]:
        return [ProfileOut(**dict(p)) for p in await self.store.profiles()]

    async def delete_profile(self, name: str, actor: str) -> None:
        if not await self.store.delete_profile(name):
            raise NotFound(f"no profile {name!r}")
        self._emit(EventType.profile_deleted, actor, EventRefs(profile=name))

    async def grant(self, profile: str, body: GrantCreate, actor: str) -> GrantOut:
        if await self.store.profile(profile) is None:
            raise NotFound(f"no profile {profile!r}")
        g = await self.store.insert_grant(profile, body.tool, body.read_only, body.reason, actor)
        self._emit(
            EventType.grant_added,
            actor,
            EventRefs(profile=profile, tool=body.tool),
            grant_id=str(g["id"]),
            read_only=body.read_only,
            reason=body.reason,
        )
        return _grant(g)

    async def revoke(self, profile: str, grant_id: str, actor: str) -> None:
        try:
            gid = uuid.UUID(grant_id)
        except ValueError:
            raise NotFound(f"no grant {grant_id!r}") from None
        g = await self.store.delete_grant(profile, gid)
        if g is None:
            raise NotFound(f"no grant {grant_id!r} in profile {profile!r}")
        self._emit(EventType.grant_revoked, actor, EventRefs(profile=profile, tool=g["tool"]), grant_id=grant_id)


def _grant(g: Any) -> GrantOut:
    return GrantOut(
        id=str(g["id"]),
        tool=g["tool"],
        read_only=g["read_only"],
        reason=g["reason"],
        granted_by=g["granted_by"],
        created_at=g["created_at"],
    )
