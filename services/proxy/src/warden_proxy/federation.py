"""Resources, prompts and completion on the MCP endpoint, aggregated from a profile's connectors.

Governed like tools:
- Only the connectors the registry names for the profile (those with a tool the profile may
  use) are asked; a connector without a grant is never contacted for an agent.
- Each upstream request carries that connector's credential for the caller (the same
  `CallPipeline.credential`, per-user connections included); a refusal leaves the connector
  out of listings and fails a read. Credentials never reach the agent.
- Reads and prompt fetches are audited (`resource.read`, `prompt.fetched`, with the URI or
  name; never the contents).

Names: prompts follow the profile's `tool_names` setting, like tools (`<alias>__<prompt>`, or
the upstream's name while no other connector of the profile has a prompt of that name).
Resource URIs are left as the upstream gives them unless two connectors of the profile list
the same one; those (and only those) become `<alias>+<uri>`. The `<alias>+<uri>` form is
accepted for any URI. A URI no connector lists is routed by the connectors' URI templates,
or to the profile's only connector; an ambiguous one is refused with a hint.

Subscriptions (`subscriptions.py`): one upstream subscription per (connector, user, URI),
shared by every agent session that asked; the upstream's updates go to each of them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ValidationError
from warden_common.contracts import (
    REGISTRY_CONNECTORS,
    EventRefs,
    EventType,
    ProfileConnector,
    ProfileConnectorsRequest,
)
from warden_common.errors import WardenError

from warden_proxy.agents import Principal
from warden_proxy.relay import LogLevels, relayed
from warden_proxy.service import CallPipeline
from warden_proxy.subscriptions import Subscriptions
from warden_proxy.upstream import UpstreamUnauthorized

__all__ = ["Federation"]

log = logging.getLogger(__name__)

SEPARATOR = "__"
URI_PREFIX = "+"
RESOURCE_NOT_FOUND = -32002
M = TypeVar("M", bound=BaseModel)
_MAX_PAGES = 20
_INDEX_TTL_S = 30.0
_MAX_INDEXES = 10_000


@dataclass
class _Index:
    """One caller's view of its connectors' resources and prompts (shown name -> origin)."""

    connectors: dict[str, ProfileConnector]  # alias -> connector
    tool_names: str
    resources: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (connector, raw resource)
    templates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    prompts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    uri_of: dict[str, tuple[str, str]] = field(default_factory=dict)  # shown uri -> (connector, upstream uri)
    template_of: dict[str, tuple[str, str]] = field(default_factory=dict)
    prompt_of: dict[str, tuple[str, str]] = field(default_factory=dict)
    matchers: list[tuple[str, re.Pattern[str]]] = field(default_factory=list)
    built: float = field(default_factory=time.monotonic)

    @property
    def by_connector(self) -> dict[str, str]:
        return {c.connector: a for a, c in self.connectors.items()}


def _template_regex(template: str) -> re.Pattern[str]:
    """An RFC 6570 template as a matcher: simple `{x}` spans one path segment, others anything."""
    out, pos = [], 0
    for m in re.finditer(r"\{([^}]*)\}", template):
        out.append(re.escape(template[pos : m.start()]))
        op = m.group(1)[:1]
        out.append(".*" if op in "+#/?&;." else "[^/?#]+")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("^" + "".join(out) + "$")


def _shown(items: list[tuple[str, str]], aliases: dict[str, str], always: bool, sep: str) -> list[str]:
    """Shown names for (connector, name) pairs: prefixed when `always` or the name repeats."""
    count: dict[str, int] = {}
    for _, n in items:
        count[n] = count.get(n, 0) + 1
    return [f"{aliases[c]}{sep}{n}" if always or count[n] > 1 else n for c, n in items]


def _as_shown(
    items: list[tuple[str, dict[str, Any]]], origin_of: dict[str, tuple[str, str]], key: str, model: type[M], what: str
) -> list[M]:
    """Upstream entries as the caller sees them: `key` (uri, uriTemplate or name) replaced by
    its shown form; one that does not validate is left out."""
    shown = {v: k for k, v in origin_of.items()}
    out = []
    for c, x in items:
        try:
            out.append(model.model_validate({**x, key: shown[(c, str(x.get(key, "")))]}))
        except ValidationError:
            log.debug("a malformed %s from %s left out", what, c)
    return out


class Federation:
    def __init__(
        self,
        pipeline: CallPipeline,
        *,
        principal_of: Callable[[ServerRequestContext[Any, Any]], Principal],
        client_key: Callable[[ServerRequestContext[Any, Any], Principal], str],
        index_ttl_s: float = _INDEX_TTL_S,
    ) -> None:
        self.pipeline = pipeline
        self.principal_of = principal_of
        self.client_key = client_key
        self.index_ttl_s = index_ttl_s
        self.levels = LogLevels()
        self._indexes: dict[tuple[str, str], _Index] = {}
        self.subscriptions = Subscriptions()
        pipeline.pool.on_notification = self._upstream_notification

    def install(self, server: Server[Any]) -> None:
        """Register the handlers on the endpoint's server, and relay upstream requests made
        during tool calls to the calling agent."""
        server.add_request_handler("resources/list", types.PaginatedRequestParams, self._list_resources)
        server.add_request_handler(
            "resources/templates/list", types.PaginatedRequestParams, self._list_resource_templates
        )
        server.add_request_handler("resources/read", types.ReadResourceRequestParams, self._read_resource)
        server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, self._subscribe)
        server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, self._unsubscribe)
        server.add_request_handler("prompts/list", types.PaginatedRequestParams, self._list_prompts)
        server.add_request_handler("prompts/get", types.GetPromptRequestParams, self._get_prompt)
        server.add_request_handler("completion/complete", types.CompleteRequestParams, self._complete)
        server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, self._set_level)
        call = server.get_request_handler("tools/call")
        if call is not None:
            key = self._key
            server.add_request_handler("tools/call", call.params_type, relayed(call.handler, self.levels, key))

    def _key(self, ctx: ServerRequestContext[Any, Any]) -> str:
        return self.client_key(ctx, self.principal_of(ctx))

    # -- upstream access -------------------------------------------------------------------
    async def _ask(self, p: Principal, connector: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One request with the caller's credential. An open breaker is respected, but these
        requests never move it: an upstream without resources or prompts answers an error to
        each listing, and that must not stop its tools."""
        self.pipeline.breakers.check(connector)
        cred = await self.pipeline.credential(connector, p.user, jwe=p.jwe)
        pool = self.pipeline.pool
        try:
            return await pool.request(cred, p.user, method, params)
        except UpstreamUnauthorized:
            cred = await self.pipeline.credential(connector, p.user, force=True, jwe=p.jwe)
            await pool.close_credential(cred, p.user)  # this user's session only
            return await pool.request(cred, p.user, method, params)

    async def _list_all(self, p: Principal, connector: str, method: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await self._ask(p, connector, method, {"cursor": cursor} if cursor else {})
            got = page.get(key)
            items.extend(x for x in (got if isinstance(got, list) else []) if isinstance(x, dict))
            cursor = page.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
        return items

    async def _gather(self, p: Principal, conns: list[ProfileConnector], method: str, key: str) -> list[Any]:
        async def one(c: ProfileConnector) -> list[tuple[str, dict[str, Any]]]:
            try:
                return [(c.connector, x) for x in await self._list_all(p, c.connector, method, key)]
            except WardenError as e:
                # an upstream without the feature answers method-not-found: nothing to list
                log.debug("%s of %s left out: %s", method, c.connector, e.message)
                return []

        out: list[tuple[str, dict[str, Any]]] = []
        for part in await asyncio.gather(*(one(c) for c in conns)):
            out.extend(part)
        return out

    async def _index(self, p: Principal, *, fresh: bool = False) -> _Index:
        """The caller's index. The registry is asked every time (a revoked grant takes effect at
        once); the upstreams' listings are reused for a short while when nothing changed."""
        key = (p.profile, p.user or "")
        answer = await self.pipeline.bus.request(REGISTRY_CONNECTORS, ProfileConnectorsRequest(profile=p.profile))
        conns = {c.alias: c for c in answer.connectors}
        hit = self._indexes.get(key)
        if (
            hit is not None
            and not fresh
            and hit.connectors == conns
            and hit.tool_names == answer.tool_names
            and time.monotonic() - hit.built < self.index_ttl_s
        ):
            return hit
        idx = _Index(conns, answer.tool_names)
        listed = answer.connectors
        idx.resources, idx.templates, idx.prompts = await asyncio.gather(
            self._gather(p, listed, "resources/list", "resources"),
            self._gather(p, listed, "resources/templates/list", "resourceTemplates"),
            self._gather(p, listed, "prompts/list", "prompts"),
        )
        aliases = idx.by_connector
        pairs = [(c, str(r.get("uri", ""))) for c, r in idx.resources]
        idx.uri_of = dict(zip(_shown(pairs, aliases, False, URI_PREFIX), pairs, strict=True))
        pairs = [(c, str(t.get("uriTemplate", ""))) for c, t in idx.templates]
        idx.template_of = dict(zip(_shown(pairs, aliases, False, URI_PREFIX), pairs, strict=True))
        idx.matchers = [(c, _template_regex(t)) for c, t in pairs]
        pairs = [(c, str(x.get("name", ""))) for c, x in idx.prompts]
        namespaced = idx.tool_names != "bare"
        idx.prompt_of = dict(zip(_shown(pairs, aliases, namespaced, SEPARATOR), pairs, strict=True))
        self._indexes[key] = idx
        while len(self._indexes) > _MAX_INDEXES:
            self._indexes.pop(next(iter(self._indexes)))
        return idx

    def _event(self, type: EventType, p: Principal, connector: str, status: str, **data: Any) -> None:
        bus = self.pipeline.bus
        refs = EventRefs(connector=connector, profile=p.profile, user=p.user)
        bus.emit_event(type, actor=p.actor(), refs=refs, status=status, data=data)

    # -- routing ---------------------------------------------------------------------------
    def _route_uri(self, idx: _Index, uri: str) -> tuple[str, str] | None:
        if (hit := idx.uri_of.get(uri)) is not None:
            return hit
        alias, plus, rest = uri.partition(URI_PREFIX)
        if plus and rest and alias in idx.connectors:
            return idx.connectors[alias].connector, rest
        owners = {c for c, rx in idx.matchers if rx.match(uri)} | {c for (c, u) in idx.uri_of.values() if u == uri}
        if len(owners) > 1:
            hint = ", ".join(f"{idx.by_connector[c]}{URI_PREFIX}{uri}" for c in sorted(owners))
            raise MCPError(types.INVALID_PARAMS, f"{uri} is offered by more than one connector; read one of: {hint}")
        if owners:
            return owners.pop(), uri
        if len(idx.connectors) == 1:
            return next(iter(idx.connectors.values())).connector, uri
        return None

    async def _resolve_uri(self, p: Principal, uri: str) -> tuple[str, str]:
        route = self._route_uri(await self._wrap(self._index(p)), uri)
        if route is None:
            route = self._route_uri(await self._wrap(self._index(p, fresh=True)), uri)
        if route is None:
            raise MCPError(RESOURCE_NOT_FOUND, f"resource not found: {uri}")
        return route

    async def _resolve_prompt(self, p: Principal, name: str) -> tuple[str, str]:
        for fresh in (False, True):
            idx = await self._wrap(self._index(p, fresh=fresh))
            if (hit := idx.prompt_of.get(name)) is not None:
                return hit
            alias, sep, rest = name.partition(SEPARATOR)
            if sep and rest and alias in idx.connectors:
                return idx.connectors[alias].connector, rest
        raise MCPError(types.INVALID_PARAMS, f"unknown prompt: {name}")

    @staticmethod
    async def _wrap(aw: Any) -> Any:
        """Await, turning Warden's errors into MCP errors the agent can act on."""
        try:
            return await aw
        except WardenError as e:
            raise MCPError(types.INTERNAL_ERROR, e.message) from None

    # -- handlers --------------------------------------------------------------------------
    async def _list_resources(self, ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListResourcesResult:
        idx = await self._wrap(self._index(self.principal_of(ctx), fresh=True))
        out = _as_shown(idx.resources, idx.uri_of, "uri", types.Resource, "resource")
        return types.ListResourcesResult(resources=out)

    async def _list_resource_templates(
        self, ctx: ServerRequestContext[Any, Any], params: Any
    ) -> types.ListResourceTemplatesResult:
        idx = await self._wrap(self._index(self.principal_of(ctx), fresh=True))
        out = _as_shown(idx.templates, idx.template_of, "uriTemplate", types.ResourceTemplate, "resource template")
        return types.ListResourceTemplatesResult(resource_templates=out)

    async def _read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        p = self.principal_of(ctx)
        uri = str(params.uri)
        connector, raw = await self._resolve_uri(p, uri)
        try:
            out = await self._ask(p, connector, "resources/read", {"uri": raw})
            got = out.get("contents")
            contents: list[Any] = got if isinstance(got, list) else []
            if raw != uri:  # answer in the caller's terms
                contents = [{**c, "uri": uri} if isinstance(c, dict) and c.get("uri") == raw else c for c in contents]
            result = types.ReadResourceResult.model_validate({"contents": contents})
        except WardenError as e:
            self._event(EventType.resource_read, p, connector, "error", uri=uri, reason=e.message)
            raise MCPError(types.INTERNAL_ERROR, e.message) from None
        except ValidationError:
            self._event(EventType.resource_read, p, connector, "error", uri=uri, reason="malformed")
            raise MCPError(types.INTERNAL_ERROR, f"upstream {connector} answered a malformed resource") from None
        self._event(EventType.resource_read, p, connector, "ok", uri=uri)
        return result

    async def _subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        p = self.principal_of(ctx)
        uri = str(params.uri)
        connector, raw = await self._resolve_uri(p, uri)
        await self.subscriptions.add(
            (connector, p.user or "", raw),
            self.client_key(ctx, p),
            ctx.session,
            uri,
            lambda: self._wrap(self._ask(p, connector, "resources/subscribe", {"uri": raw})),
        )
        return types.EmptyResult()

    async def _unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        p = self.principal_of(ctx)
        uri = str(params.uri)
        connector, raw = await self._resolve_uri(p, uri)
        await self.subscriptions.remove(
            (connector, p.user or "", raw),
            self.client_key(ctx, p),
            lambda: self._wrap(self._ask(p, connector, "resources/unsubscribe", {"uri": raw})),
        )
        return types.EmptyResult()

    async def _upstream_notification(self, connector: str, user: str, doc: dict[str, Any]) -> None:
        if doc.get("method") == "notifications/resources/updated":
            await self.subscriptions.updated(connector, user, str((doc.get("params") or {}).get("uri", "")))

    async def _list_prompts(self, ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListPromptsResult:
        idx = await self._wrap(self._index(self.principal_of(ctx), fresh=True))
        out = _as_shown(idx.prompts, idx.prompt_of, "name", types.Prompt, "prompt")
        return types.ListPromptsResult(prompts=out)

    async def _get_prompt(
        self, ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        p = self.principal_of(ctx)
        connector, raw = await self._resolve_prompt(p, params.name)
        args = dict(params.arguments or {})
        try:
            out = await self._ask(p, connector, "prompts/get", {"name": raw, "arguments": args})
            result = types.GetPromptResult.model_validate(out)
        except WardenError as e:
            self._event(EventType.prompt_fetched, p, connector, "error", prompt=params.name, reason=e.message)
            raise MCPError(types.INTERNAL_ERROR, e.message) from None
        except ValidationError:
            self._event(EventType.prompt_fetched, p, connector, "error", prompt=params.name, reason="malformed")
            raise MCPError(types.INTERNAL_ERROR, f"upstream {connector} answered a malformed prompt") from None
        self._event(EventType.prompt_fetched, p, connector, "ok", prompt=params.name, arguments=sorted(args))
        return result

    async def _complete(
        self, ctx: ServerRequestContext[Any, Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        p = self.principal_of(ctx)
        ref = params.ref.model_dump(mode="json", by_alias=True, exclude_none=True)
        if ref.get("type") == "ref/prompt":
            connector, ref["name"] = await self._resolve_prompt(p, str(ref.get("name", "")))
        else:
            shown = str(ref.get("uri", ""))
            idx = await self._wrap(self._index(p))
            hit = idx.template_of.get(shown) or (await self._wrap(self._index(p, fresh=True))).template_of.get(shown)
            if hit is None:
                raise MCPError(types.INVALID_PARAMS, f"unknown resource template: {shown}")
            connector, ref["uri"] = hit
        body = params.model_dump(mode="json", by_alias=True, exclude_none=True)
        body.pop("_meta", None)
        try:
            out = await self._ask(p, connector, "completion/complete", {**body, "ref": ref})
            return types.CompleteResult.model_validate(out)
        except WardenError as e:
            raise MCPError(types.INTERNAL_ERROR, e.message) from None
        except ValidationError:
            raise MCPError(types.INTERNAL_ERROR, f"upstream {connector} answered a malformed completion") from None

    async def _set_level(
        self, ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        self.levels.set(self._key(ctx), params.level)
        return types.EmptyResult()
