"""The admin's curation of the catalog: tools, connector settings, profiles and grants.

A mixin of `Registry` (service.py): every change is stored, drops the access snapshot and
publishes an event, like the rest of the registry's logic. No FastAPI, no NATS handlers.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from warden_common.contracts import EventRefs, EventType

from warden_registry.access import Grant
from warden_registry.catalog import is_pattern
from warden_registry.errors import BadInput, Conflict, NotFound
from warden_registry.models import (
    ConnectorSettingsOut,
    ConnectorSettingsPatch,
    GrantCreate,
    GrantOut,
    ProfileCreate,
    ProfileOut,
    ProfilePatch,
    ToolOut,
    ToolPatch,
)
from warden_registry.store import Store

__all__ = ["Curation"]


def _tool_out(r: Any) -> ToolOut:
    return ToolOut(**{k: r[k] for k in ToolOut.model_fields})


def _grant_out(g: Any) -> GrantOut:
    return GrantOut(
        id=str(g["id"]),
        tool=g["tool"],
        read_only=g["read_only"],
        reason=g["reason"],
        granted_by=g["granted_by"],
        created_at=g["created_at"],
    )


def _grant_warnings(body: GrantCreate, tools: list[tuple[str, str]]) -> list[str]:
    """Refuse an exact grant of no registered tool; warn about a pattern that matches none (or,
    read-only, only write tools)."""
    rule = Grant.of(body.tool, body.read_only)
    matched = [(n, op) for n, op in tools if rule.matches(n)]
    if not is_pattern(body.tool):
        if not matched:
            raise BadInput(
                f"tool: no registered tool is named {body.tool!r}; register the connector's tools first "
                "(GET /v1/tools lists them), or grant a pattern such as <connector>__* for tools registered later",
                details={"field": "tool"},
            )
    elif not matched:
        return [f"the pattern {body.tool!r} matches no registered tool yet: it applies to tools registered later"]
    if body.read_only and all(op != "read" for _, op in matched):
        return [f"read-only: {body.tool!r} matches only write tools, so this grant lets its agents call none of them"]
    return []


class Curation:
    store: Store

    if TYPE_CHECKING:  # provided by Registry

        def invalidate(self) -> None: ...

        def _emit(self, type: EventType, actor: str | None, refs: EventRefs, **data: Any) -> None: ...

    # -- tools ---------------------------------------------------------------------------
    async def unregister(self, connector: str, name: str, actor: str) -> None:
        if not await self.store.delete_tool(connector, name):
            raise NotFound(f"no tool {name} on connector {connector}")
        self.invalidate()
        self._emit(EventType.tool_unregistered, actor, EventRefs(connector=connector, tool=name))

    async def list_tools(
        self, *, connector: str | None = None, q: str | None = None, **flags: str | bool | None
    ) -> list[ToolOut]:
        rows = await (self.store.tools_of(connector) if connector else self.store.all_tools())
        needle = q.lower() if q else None
        out = []
        for r in rows:
            if needle and needle not in f"{r['name']} {r['description']}".lower():
                continue
            if any(v is not None and r[k] != v for k, v in flags.items()):
                continue
            out.append(_tool_out(r))
        return out

    async def get_tool(self, name: str) -> ToolOut:
        r = await self.store.tool(name)
        if r is None:
            raise NotFound(f"no tool named {name}")
        return _tool_out(r)

    async def update_tool(self, name: str, patch: ToolPatch, actor: str) -> ToolOut:
        fields = patch.model_dump(exclude_none=True)
        if not fields:
            return await self.get_tool(name)
        r = await self.store.update_tool(name, fields)
        if r is None:
            raise NotFound(f"no tool named {name}")
        self.invalidate()
        self._emit(EventType.tool_updated, actor, EventRefs(connector=r["connector"], tool=name), **fields)
        return _tool_out(r)

    # -- connector settings ---------------------------------------------------------------
    async def connector_settings(self, connector: str) -> ConnectorSettingsOut:
        s = await self.store.connector_settings(connector)
        if s is None:
            return ConnectorSettingsOut(
                connector=connector,
                alias=connector,
                auto_approve_default=True,
                cache_enabled=True,
                refreshed_at=None,
                tools=0,
            )
        return ConnectorSettingsOut(**{**dict(s), "alias": s["alias"] or connector})

    async def all_connector_settings(self) -> list[ConnectorSettingsOut]:
        rows = await self.store.all_connector_settings()
        return [ConnectorSettingsOut(**{**dict(r), "alias": r["alias"] or r["connector"]}) for r in rows]

    async def update_connector_settings(
        self, connector: str, patch: ConnectorSettingsPatch, actor: str
    ) -> ConnectorSettingsOut:
        fields = patch.model_dump(exclude_none=True)
        if fields:
            await self.store.set_connector_settings(connector, **fields)
            self.invalidate()
            # `tool.updated` with no tool: every registry replica and proxy drops its cache
            self._emit(EventType.tool_updated, actor, EventRefs(connector=connector), connector_settings=fields)
        return await self.connector_settings(connector)

    # -- profiles and grants --------------------------------------------------------------
    async def create_profile(self, body: ProfileCreate, actor: str) -> ProfileOut:
        if not await self.store.insert_profile(body.name, body.description, actor, body.tool_names):
            raise Conflict(f"profile {body.name} exists")
        if body.tool_names != "namespaced":
            self.invalidate()
        self._emit(
            EventType.profile_created,
            actor,
            EventRefs(profile=body.name),
            description=body.description,
            tool_names=body.tool_names,
        )
        return await self.get_profile(body.name)

    async def update_profile(self, name: str, patch: ProfilePatch, actor: str) -> ProfileOut:
        fields = patch.model_dump(exclude_none=True)
        if fields:
            if await self.store.update_profile(name, **fields) is None:
                raise NotFound(f"no profile named {name}")
            self.invalidate()
            self._emit(EventType.profile_updated, actor, EventRefs(profile=name), **fields)
        return await self.get_profile(name)

    async def get_profile(self, name: str) -> ProfileOut:
        p = await self.store.profile(name)
        if p is None:
            raise NotFound(f"no profile named {name}")
        return ProfileOut(**dict(p), grants=[_grant_out(g) for g in await self.store.grants(name)])

    async def list_profiles(self) -> list[ProfileOut]:
        grants: dict[str, list[GrantOut]] = {}
        for g in await self.store.grants():
            grants.setdefault(g["profile"], []).append(_grant_out(g))
        return [ProfileOut(**dict(p), grants=grants.get(p["name"], [])) for p in await self.store.profiles()]

    async def delete_profile(self, name: str, actor: str) -> None:
        if not await self.store.delete_profile(name):
            raise NotFound(f"no profile named {name}")
        self.invalidate()
        self._emit(EventType.profile_deleted, actor, EventRefs(profile=name))

    async def grant(self, profile: str, body: GrantCreate, actor: str) -> GrantOut:
        """A grant of a registered tool, or of a pattern. An exact name that names no registered
        tool is refused (a typo would otherwise grant nothing, silently); a pattern may name tools
        registered later, so one that matches nothing yet is kept and answered with a warning."""
        if await self.store.profile(profile) is None:
            raise NotFound(f"no profile named {profile}")
        warnings = _grant_warnings(body, [(r["name"], r["operation"]) for r in await self.store.all_tools()])
        g = await self.store.insert_grant(profile, body.tool, body.read_only, body.reason, actor)
        if g is None:
            raise NotFound(f"no profile named {profile}")
        self.invalidate()
        self._emit(
            EventType.grant_added,
            actor,
            EventRefs(profile=profile, tool=body.tool),
            grant_id=str(g["id"]),
            read_only=body.read_only,
            reason=body.reason,
            **({"warnings": warnings} if warnings else {}),
        )
        return _grant_out(g).model_copy(update={"warnings": warnings})

    async def revoke(self, profile: str, grant_id: str, actor: str, reason: str = "") -> None:
        try:
            gid = uuid.UUID(grant_id)
        except ValueError:
            raise NotFound(f"no grant {grant_id} in profile {profile}") from None
        g = await self.store.delete_grant(profile, gid)
        if g is None:
            raise NotFound(f"no grant {grant_id} in profile {profile}")
        self.invalidate()
        self._emit(
            EventType.grant_revoked,
            actor,
            EventRefs(profile=profile, tool=g["tool"]),
            grant_id=grant_id,
            read_only=g["read_only"],
            reason=reason,
        )
