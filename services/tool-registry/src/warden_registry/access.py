"""Who may see what: an in-memory snapshot of tools and grants, and the answers built on it.

The proxy asks `visible` on every MCP tools/list and `resolve` on every call, so both run on
this snapshot and do no SQL. Any change, in this replica or another (registry events), drops
it; the next question rebuilds it once. A rebuild that raced a change is not kept.

Fail closed: a tool is visible only when some grant of the profile matches its name (and, for
a read-only grant, its operation is `read`), it is enabled, not held after drift and still
listed upstream. Deferred tools are left out of the listing; a built-in `tool_search` entry
takes their place.

Names: grants always match the registered `<alias>__<tool>` name. A profile whose setting is
`bare` sees a tool under its upstream name instead, as long as that name is unambiguous among
the tools the profile may use (no other usable tool has the same upstream name or that full
name, and it is not `tool_search`); otherwise, for both tools, the registered name. The
registered name resolves in either mode.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from warden_common.contracts import ProfileConnector, ProfileConnectors, ResolvedTool, ToolView, VisibleTools

from warden_registry.catalog import check_schema, classify, is_pattern, valid_mcp_name
from warden_registry.errors import Forbidden, NotFound
from warden_registry.searching import SearchDoc

__all__ = ["TOOL_SEARCH", "Access", "Cut", "Entry", "Grant", "Snapshot"]

TOOL_SEARCH = ToolView(
    name="tool_search",
    description=(
        "Search the tools available to you that are not listed by default. Returns the best matches "
        "with their input schemas; after a search they can be called by name."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "query": {
                "type": "string",
                "minLength": 1,
                "maxLength": 1000,
                "description": "what you want to do, in a few words",
            },
            "k": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5, "description": "how many tools"},
        },
        "required": ["query"],
        "additionalProperties": False,
    },
    annotations={"readOnlyHint": True, "openWorldHint": False},
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One registered tool as agents get it: after a drift that is not held, the upstream's
    current listing; otherwise the approved (pinned) one."""

    name: str
    connector: str
    alias: str
    upstream_name: str
    description: str
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None
    operation: str
    auto_approve: bool
    approver: str | None  # the tool's own, else its connector's default, else None
    deferred: bool
    favorite: bool
    enabled: bool
    schema_valid: bool
    held: bool
    missing: bool
    pin: str  # the hash of the name, description and schema served
    connector_id: str | None = None  # the connector it was registered against
    title: str | None = None
    output_schema: dict[str, Any] | None = None
    icons: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None
    local_name: str | None = None  # the admin's name for it (the upstream's is not MCP's)
    # the fact the registry would give it from its listing: the admin changed it when it differs
    classified: str = "write"

    @classmethod
    def from_row(cls, r: Mapping[str, Any]) -> Entry:
        desc, schema, ann, valid = r["description"], r["input_schema"], r["annotations"], r["schema_valid"]
        meta = {k: r.get(k) for k in ("title", "output_schema", "icons", "meta")}
        pin = r["pin_hash"]
        drift = r["drift"]
        if drift and not r["held"]:
            desc, schema, ann = drift["description"], drift["input_schema"], drift.get("annotations")
            valid = check_schema(schema)
            pin = drift.get("pin_hash", pin)
            meta = {k: drift.get(k, v) for k, v in meta.items()}
        return cls(
            name=r["name"],
            connector=r["connector"],
            alias=r["alias"],
            upstream_name=r["upstream_name"],
            description=desc,
            input_schema=schema,
            annotations=ann,
            operation=r["operation"],
            auto_approve=r["auto_approve"],
            approver=r.get("approver") or r.get("approver_default"),
            deferred=r["deferred"],
            favorite=r["favorite"],
            enabled=r["enabled"],
            schema_valid=valid,
            held=r["held"],
            missing=r["missing"],
            pin=pin,
            connector_id=r.get("connector_id"),
            local_name=r.get("local_name"),
            classified=classify(r["upstream_name"], desc, ann),
            **meta,
        )

    @property
    def usable(self) -> bool:
        return self.enabled and not self.held and not self.missing

    @property
    def tool(self) -> str:
        """The tool's own name (after the alias): the admin's, else the upstream's."""
        return self.local_name or self.upstream_name

    def shown_annotations(self) -> dict[str, Any] | None:
        """The upstream's annotations, with the registry's fact in readOnlyHint/destructiveHint
        when an admin changed it (a read-only grant follows the fact, so must the agent)."""
        if self.operation == self.classified:
            return self.annotations
        ann = dict(self.annotations or {})
        if self.operation == "read":
            ann["readOnlyHint"] = True
            ann.pop("destructiveHint", None)  # meaningful only when readOnlyHint is false
        else:
            ann["readOnlyHint"] = False
            if ann.get("destructiveHint") is False and self.classified == "read":
                ann.pop("destructiveHint")  # an unknown write: MCP's default, destructive
        return ann

    def view(self, name: str | None = None) -> ToolView:
        return ToolView(
            name=name or self.name,
            description=self.description,
            input_schema=self.input_schema,
            annotations=self.shown_annotations(),
            title=self.title,
            output_schema=self.output_schema,
            icons=self.icons,
            meta=self.meta,
        )


@dataclass(frozen=True, slots=True)
class Grant:
    pattern: str
    read_only: bool
    regex: re.Pattern[str] | None = None

    @classmethod
    def of(cls, pattern: str, read_only: bool) -> Grant:
        rx = re.compile(fnmatch.translate(pattern)) if is_pattern(pattern) else None
        return cls(pattern, read_only, rx)

    def matches(self, name: str) -> bool:
        return bool(self.regex.match(name)) if self.regex is not None else name == self.pattern

    def allows(self, entry: Entry) -> bool:
        return self.matches(entry.name) and (not self.read_only or entry.operation == "read")


@dataclass(frozen=True, slots=True)
class Cut:
    """What one profile may use: listed tools, deferred tools, the listing answer, and the
    name each usable tool is shown under (registered name -> shown name, and back)."""

    listed: list[Entry]
    deferred: list[Entry]
    answer: VisibleTools
    shown: dict[str, str] = field(default_factory=dict)
    registered: dict[str, str] = field(default_factory=dict)

    @property
    def usable(self) -> list[Entry]:
        return self.listed + self.deferred

    def view(self, e: Entry) -> ToolView:
        return e.view(self.shown.get(e.name, e.name))


def shown_names(usable: Iterable[Entry], tool_names: str) -> dict[str, str]:
    """Registered name -> the name a profile's agents see (see the module docstring)."""
    entries = list(usable)
    if tool_names != "bare":
        return {e.name: e.name for e in entries}
    full = {e.name for e in entries}
    count: dict[str, int] = {}
    for e in entries:
        count[e.tool] = count.get(e.tool, 0) + 1
    out = {}
    for e in entries:
        bare = e.tool
        ok = count[bare] == 1 and bare not in full and bare != TOOL_SEARCH.name and valid_mcp_name(bare)
        out[e.name] = bare if ok else e.name
    return out


@dataclass
class Snapshot:
    tools: dict[str, Entry]
    grants: dict[str, list[Grant]]
    # connectors whose listings go to the upstream every time (cache off)
    cache_off: frozenset[str] = frozenset()
    # profiles whose naming is not the default `namespaced`
    naming: dict[str, str] = field(default_factory=dict)
    _cuts: dict[str, Cut] = field(default_factory=dict)
    _live: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        tools: Iterable[Mapping[str, Any]],
        grants: Iterable[Mapping[str, Any]],
        cache_off: Iterable[str] = (),
        naming: Mapping[str, str] | None = None,
    ) -> Snapshot:
        by_profile: dict[str, list[Grant]] = {}
        for g in grants:
            by_profile.setdefault(g["profile"], []).append(Grant.of(g["tool"], g["read_only"]))
        return cls({r["name"]: Entry.from_row(r) for r in tools}, by_profile, frozenset(cache_off), dict(naming or {}))

    @cached_property
    def catalog_key(self) -> int:
        """Changes when a tool's searchable text does (not on grant or flag changes)."""
        return hash(tuple(sorted((e.name, e.pin) for e in self.tools.values())))

    def search_docs(self) -> list[SearchDoc]:
        return [SearchDoc(e.name, e.description, e.input_schema) for e in self.tools.values()]

    def live_connectors(self, profile: str) -> set[str]:
        """Cache-off connectors with a tool some grant of the profile names (usable or not)."""
        if not self.cache_off:
            return set()
        hit = self._live.get(profile)
        if hit is None:
            grants = self.grants.get(profile, ())
            hit = self._live[profile] = {
                e.connector
                for e in self.tools.values()
                if e.connector in self.cache_off and any(g.matches(e.name) for g in grants)
            }
        return hit

    def _allowed(self, profile: str) -> list[Entry]:
        allowed: dict[str, Entry] = {}
        for g in self.grants.get(profile, ()):
            if g.regex is None:
                candidates: Iterable[Entry] = [e] if (e := self.tools.get(g.pattern)) is not None else []
            else:
                candidates = (e for name, e in self.tools.items() if g.regex.match(name))
            for e in candidates:
                if e.usable and (not g.read_only or e.operation == "read"):
                    allowed[e.name] = e
        return sorted(allowed.values(), key=lambda e: (not e.favorite, e.name))

    def cut(self, profile: str) -> Cut:
        hit = self._cuts.get(profile)
        if hit is not None:
            return hit
        allowed = self._allowed(profile)
        listed = [e for e in allowed if not e.deferred]
        deferred = [e for e in allowed if e.deferred]
        shown = shown_names(allowed, self.naming.get(profile, "namespaced"))
        views = [e.view(shown[e.name]) for e in listed]
        if deferred:
            views.append(TOOL_SEARCH)
        registered = {v: k for k, v in shown.items() if k != v}
        cut = Cut(listed, deferred, VisibleTools(tools=views, has_deferred=bool(deferred)), shown, registered)
        self._cuts[profile] = cut
        return cut

    def connectors(self, profile: str) -> ProfileConnectors:
        """The connectors with a tool the profile may use, for resources and prompts."""
        seen: dict[str, str] = {}
        for e in self.cut(profile).usable:
            seen.setdefault(e.connector, e.alias)
        return ProfileConnectors(
            connectors=[ProfileConnector(connector=c, alias=a) for c, a in sorted(seen.items())],
            tool_names=self.naming.get(profile, "namespaced"),  # type: ignore[arg-type]
        )

    def resolve(self, profile: str, name: str) -> ResolvedTool:
        if profile in self.naming and (registered := self.cut(profile).registered.get(name)) is not None:
            r = self._resolve(profile, registered)
            view = self.tools[registered].view(name)
            return r.model_copy(update={"name": name, "registered_name": registered, "view": view})
        return self._resolve(profile, name)

    def _resolve(self, profile: str, name: str) -> ResolvedTool:
        e = self.tools.get(name)
        matching = [g for g in self.grants.get(profile, ()) if g.matches(name)]
        if e is None or not matching:
            # unknown and ungranted read the same: a refusal says nothing about other tools
            raise Forbidden(f"tool {name} is not available to profile {profile}")
        if not any(not g.read_only or e.operation == "read" for g in matching):
            raise Forbidden(f"profile {profile} has read-only access to {name}, which writes")
        if not e.enabled:
            raise Forbidden(f"tool {name} is disabled")
        if e.held:
            raise Forbidden(f"tool {name} changed upstream and is held until an admin re-approves it")
        if e.missing:
            raise NotFound(f"tool {name} is no longer offered by its upstream")
        return ResolvedTool(
            name=e.name,
            connector=e.connector,
            upstream_name=e.upstream_name,
            description=e.description,
            input_schema=e.input_schema,
            operation=e.operation,  # type: ignore[arg-type]
            auto_approve=e.auto_approve,
            approver=e.approver,  # type: ignore[arg-type]
            deferred=e.deferred,
            schema_valid=e.schema_valid,
            connector_id=e.connector_id,
            view=e.view(),
        )


class Access:
    """Holds the current snapshot; `invalidate()` on any change, here or in another replica."""

    _RETRIES = 3

    def __init__(self, load: Callable[[], Awaitable[Snapshot]]) -> None:
        self._load = load
        self._snap: Snapshot | None = None
        self._gen = 0
        self._lock = asyncio.Lock()

    @property
    def generation(self) -> int:
        return self._gen

    def invalidate(self) -> None:
        self._gen += 1
        self._snap = None

    async def snapshot(self) -> Snapshot:
        snap = self._snap
        if snap is not None:
            return snap
        async with self._lock:
            for _ in range(self._RETRIES):
                if self._snap is not None:
                    return self._snap
                gen = self._gen
                snap = await self._load()
                if gen == self._gen:  # nothing changed while loading: keep it
                    self._snap = snap
                    return snap
            return await self._load()  # still churning: answer from a newest load, keep none
