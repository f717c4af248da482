"""The call pipeline: resolve and check the grant, validate arguments, get the credential,
call upstream, publish an event for each step. Also upstream discovery for the registry.

Imports neither FastAPI nor the MCP server machinery; both edges call into this.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jsonschema
import jsonschema_rs
import mcp_types as types
import orjson
from jsonschema.exceptions import SchemaError, ValidationError
from prometheus_client import Counter, Gauge
from warden_common import otel
from warden_common.bus import Bus
from warden_common.contracts import (
    CREDENTIALS_GET,
    REGISTRY_RESOLVE,
    REGISTRY_SEARCH,
    REGISTRY_VISIBLE,
    Actor,
    Credential,
    CredentialRequest,
    EventRefs,
    EventType,
    ListUpstreamTools,
    ResolvedTool,
    ResolveRequest,
    SearchRequest,
    ToolCallResult,
    ToolView,
    UpstreamTool,
    UpstreamTools,
    VisibleRequest,
)
from warden_common.errors import WardenError
from warden_common.metrics import APPROVALS_WAITING, CALL_DURATION, UPSTREAM_ERRORS, connector_label, tool_label
from warden_common.tracing import call_parent, set_call_id

from warden_proxy.agents import Principal
from warden_proxy.approvals import Approvals, AskApproval
from warden_proxy.breaker import Breakers
from warden_proxy.consent import ConsentFlow, insufficient_scope
from warden_proxy.errors import (
    ArgumentsTooLarge,
    AuthorityGone,
    BadInput,
    ConnectorReplaced,
    InvalidArguments,
    UpstreamError,
    UpstreamResultTooLarge,
)
from warden_proxy.upstream import UpstreamPool, UpstreamUnauthorized

__all__ = ["CallPipeline"]

log = logging.getLogger(__name__)

CALLS = Counter(
    "warden_proxy_calls_total",
    "tool calls this replica ran: ok, error (the tool said isError), denied (grant or arguments), failed",
    ["outcome"],
)
_CALLS = {o: CALLS.labels(o) for o in ("ok", "error", "denied", "failed")}
# what the proxy's HPA may scale on besides CPU (deploy/components/calls-in-flight-hpa): calls
# past their grant and approval, at the upstream now (a held call waits, it does not load the proxy)
UPSTREAM_IN_FLIGHT = Gauge(
    "warden_proxy_upstream_calls_in_flight", "tool calls this replica is running at their upstream now"
)


class _TTLCache:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._d: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any | None:
        hit = self._d.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: Any, value: Any, ttl_s: float | None = None) -> None:
        self._d[key] = (time.monotonic() + (self.ttl_s if ttl_s is None else ttl_s), value)

    def drop(self, pred: Any = None) -> None:
        if pred is None:
            self._d.clear()
            return
        for k in [k for k in self._d if pred(k)]:
            del self._d[k]


def _result_to_contract(r: types.CallToolResult, call_id: str) -> ToolCallResult:
    return ToolCallResult(
        content=[c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in r.content],
        structured_content=r.structured_content if isinstance(r.structured_content, dict) else None,
        is_error=bool(r.is_error),
        call_id=call_id,
    )


_ACTING_FOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("warden_acting_for", default=None)
"""The end user a call turned out to be for (a jwt_passthrough connector's verified `sub`), set
while the call runs, read for its completion event's `refs.user`."""


def _acting_for(refs: EventRefs) -> EventRefs:
    user = _ACTING_FOR.get()
    return refs if user is None or refs.user else refs.model_copy(update={"user": user})


class CallPipeline(ConsentFlow):
    def __init__(
        self,
        bus: Bus,
        pool: UpstreamPool,
        approvals: Approvals,
        *,
        cache_ttl_s: float,
        credential_skew_s: float,
        breakers: Breakers | None = None,
        consent_wait_s: float = 120.0,
        max_argument_bytes: int = 1_000_000,
    ) -> None:
        self.max_argument_bytes = max_argument_bytes
        self.bus = bus
        self.pool = pool
        self.approvals = approvals
        self.breakers = breakers or Breakers()
        self.skew = timedelta(seconds=credential_skew_s)
        self._resolved = _TTLCache(cache_ttl_s)
        self._visible = _TTLCache(cache_ttl_s)
        self._creds = _TTLCache(3600)
        self._validators: dict[str, Any] = {}
        self._actors: dict[tuple[str, str], Actor] = {}  # immutable; one per caller
        self._consent_waiters: dict[tuple[str, str], asyncio.Event] = {}
        # (connector, user) -> digest of the credential a step-up found lacking
        self._stale: dict[tuple[str, str], str] = {}
        # (connector, user) -> why the consent a call is waiting for failed
        self._consent_failed: dict[tuple[str, str], str] = {}
        self.consent_wait_s = consent_wait_s
        self.max_consents = 10
        # called on every registry event (after the caches are dropped)
        self.registry_listeners: list[Callable[[], None]] = []

    # -- cache invalidation (events from every replica of every service) -----------------
    def on_registry_event(self) -> None:
        self._resolved.drop()
        self._visible.drop()
        self.approvals.registry_changed()  # held calls check their authority again
        for listener in self.registry_listeners:  # sessions are told when their list changed
            listener()

    async def on_connector_event(
        self,
        connector: str | None,
        config_changed: bool,
        *,
        type: str = "",
        user: str | None = None,
        reason: str | None = None,
    ) -> None:
        if connector is None:
            self._creds.drop()
            return
        if type in ("connector.connected", "connector.consent_failed"):
            for key in [k for k in self._consent_waiters if k[0] == connector and k[1] == (user or "")]:
                if type == "connector.consent_failed":  # the call waiting for it ends at once, saying why
                    self._consent_failed[key] = reason or "the authorization server refused"
                self._consent_waiters[key].set()
        self._creds.drop(lambda k: k[0] == connector)
        if config_changed:
            self.breakers.reset(connector)
            await self.pool.close_connector(connector)

    # -- registry ------------------------------------------------------------------------
    async def visible_tools(self, profile: str, *, fresh: bool = False) -> list[ToolView]:
        hit = None if fresh else self._visible.get(profile)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        vis = await self.bus.request(REGISTRY_VISIBLE, VisibleRequest(profile=profile))
        self._visible.put(profile, vis.tools)
        return vis.tools

    async def resolve(self, profile: str, tool: str) -> ResolvedTool:
        key = (profile, tool)
        hit = self._resolved.get(key)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        resolved = await self.bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=profile, tool=tool))
        self._resolved.put(key, resolved)
        return resolved

    async def resolve_fresh(self, profile: str, tool: str) -> ResolvedTool:
        resolved = await self.bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=profile, tool=tool))
        self._resolved.put((profile, tool), resolved)
        return resolved

    async def still_allowed(self, profile: str, tool: str) -> str | None:
        """Ask the registry again, past the cache: None when the call's authority holds (the
        grant, the tool enabled and not held), else why not."""
        try:
            resolved = await self.bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=profile, tool=tool))
        except WardenError as e:
            if e.retryable:
                return None  # the registry is unreachable: the check after the wait decides
            return e.message
        self._resolved.put((profile, tool), resolved)
        return None

    async def recheck(self, profile: str, tool: str, *, after: str) -> ResolvedTool:
        """After a wait (`after`: what the call waited for), resolve and check the grant again,
        past the cache; refuse with the reason when it no longer holds (fails closed)."""
        try:
            resolved = await self.bus.request(REGISTRY_RESOLVE, ResolveRequest(profile=profile, tool=tool))
        except WardenError as e:
            raise AuthorityGone(f"the call was not run: {e.message} (checked again after {after})") from None
        self._resolved.put((profile, tool), resolved)
        return resolved

    # -- credentials ---------------------------------------------------------------------
    async def credential(
        self,
        connector: str,
        user: str | None,
        *,
        force: bool = False,
        jwe: str | None = None,
        purpose: Literal["call", "discovery"] = "call",
        uncached: bool = False,
    ) -> Credential:
        """The runtime credential, from this replica's cache unless `force` (connectors
        refreshes it) or `uncached` (ask connectors, without making it refresh)."""
        key = (connector, user or "", hashlib.sha256(jwe.encode()).hexdigest() if jwe else "", purpose)
        if not force and not uncached and (hit := self._creds.get(key)) is not None:
            return hit  # type: ignore[no-any-return]
        cred = await self.bus.request(
            CREDENTIALS_GET,
            CredentialRequest(connector=connector, user=user, force_refresh=force, jwe=jwe, purpose=purpose),
        )
        ttl = 3600.0
        if cred.expires_at is not None:
            ttl = max(0.0, (cred.expires_at - self.skew - datetime.now(UTC)).total_seconds())
        self._creds.put(key, cred, ttl)
        return cred

    # -- validation ----------------------------------------------------------------------
    def validate(self, tool: ResolvedTool, arguments: dict[str, Any]) -> None:
        if not tool.schema_valid:
            raise BadInput(f"tool {tool.name} has an invalid input schema; an admin must fix or refresh it")
        v = self._validators.get(tool.name)
        if v is None or v[0] is not tool.input_schema:
            try:
                cls = jsonschema.validators.validator_for(tool.input_schema)
                cls.check_schema(tool.input_schema)
            except SchemaError:
                raise BadInput(f"tool {tool.name} has an invalid input schema; an admin must fix it") from None
            v = (tool.input_schema, cls(tool.input_schema), _fast_validator(tool.input_schema))
            self._validators[tool.name] = v
        if v[2] is not None and v[2](arguments):
            return
        # the verdict and its message are python-jsonschema's: the fast one only says "valid" sooner
        err = jsonschema.exceptions.best_match(v[1].iter_errors(arguments))
        if err is not None:
            path = [str(p) for p in err.absolute_path]
            if err.validator == "required" and isinstance(err.instance, dict):
                # "'x' is a required property" is about the object: name the missing field
                path += [r for r in err.validator_value if r not in err.instance][:1]
            where = "/".join(path) or "(arguments)"
            raise InvalidArguments(f"invalid argument {where}: {_short(err)}", details={"field": where})

    # -- the pipeline --------------------------------------------------------------------
    def _actor(self, principal: Principal) -> Actor:
        key = (principal.kind, principal.id)
        actor = self._actors.get(key)
        if actor is None:
            if len(self._actors) >= 10_000:
                self._actors.clear()
            actor = self._actors[key] = principal.actor()
        return actor

    def _event(self, type: EventType, principal: Principal, refs: EventRefs, **kw: Any) -> None:
        self.bus.emit_event(type, actor=self._actor(principal), refs=refs, **kw)

    async def search(self, principal: Principal, query: str, k: int) -> list[ToolView]:
        res = await self.bus.request(REGISTRY_SEARCH, SearchRequest(profile=principal.profile, query=query, k=k))
        self._event(
            EventType.call_completed,
            principal,
            EventRefs(tool="tool_search", profile=principal.profile, call_id=uuid.uuid4().hex),
            status="ok",
            data={"query": query, "found": [t.name for t in res.tools], "mode": res.mode},
        )
        return res.tools

    async def call(
        self,
        principal: Principal,
        tool: str,
        arguments: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        before_upstream: Callable[[], Awaitable[None]] | None = None,
        progress: Callable[[float, float | None, str | None], Awaitable[None]] | None = None,
        on_consent: Callable[[str, str], Awaitable[bool]] | None = None,
        on_consented: Callable[[str], Awaitable[None]] | None = None,
        on_approval: AskApproval | None = None,
        durable: bool = False,
        caller_wait_s: float | None = None,
    ) -> ToolCallResult:
        if not otel.enabled():
            return await self._call(
                principal, tool, arguments, idempotency_key, before_upstream, progress, on_consent, on_consented,
                on_approval, durable, caller_wait_s,
            )  # fmt: skip
        # one span per call, a child of the caller's traceparent span: names and outcome, never arguments
        with otel.span("tool call", kind="server", parent=call_parent(), attributes={"tool": tool[:200]}) as s:
            try:
                out = await self._call(
                    principal, tool, arguments, idempotency_key, before_upstream, progress, on_consent, on_consented,
                    on_approval, durable, caller_wait_s, s,
                )  # fmt: skip
            except WardenError as e:
                s.set_attribute("outcome", str(e.code))
                raise
            s.set_attribute("outcome", "error" if out.is_error else "ok")
            return out

    async def _call(
        self,
        principal: Principal,
        tool: str,
        arguments: dict[str, Any],
        idempotency_key: str | None,
        before_upstream: Callable[[], Awaitable[None]] | None,
        progress: Callable[[float, float | None, str | None], Awaitable[None]] | None,
        on_consent: Callable[[str, str], Awaitable[bool]] | None,
        on_consented: Callable[[str], Awaitable[None]] | None,
        on_approval: AskApproval | None,
        durable: bool,
        caller_wait_s: float | None,
        span: Any = None,
    ) -> ToolCallResult:
        call_id = os.urandom(16).hex()  # what uuid4().hex is made of, without the UUID object
        set_call_id(call_id)  # on every log line of this call
        if span is not None:
            span.set_attribute("call_id", call_id)  # from the trace to the call's audit events
        started = time.perf_counter()
        _ACTING_FOR.set(None)
        refs = EventRefs(tool=tool, profile=principal.profile, call_id=call_id, user=principal.user)
        self._event(EventType.call_requested, principal, refs, status="requested", data={"arguments": arguments})
        try:
            if arguments and (size := _json_size(arguments)) > self.max_argument_bytes:
                raise ArgumentsTooLarge(
                    f"the arguments are {size:,} bytes of JSON; this gateway takes at most "
                    f"{self.max_argument_bytes:,} (WARDEN_PROXY_MAX_ARGUMENT_BYTES)",
                    details={"field": "(arguments)", "size": size, "limit": self.max_argument_bytes},
                )
            resolved = await self.resolve(principal.profile, tool)
            refs = EventRefs(  # a bare name is recorded as the catalog's, so `<alias>__*` filters find it
                tool=resolved.registered_name or tool,
                profile=principal.profile,
                call_id=call_id,
                user=principal.user,
                connector=resolved.connector,
            )
            self.validate(resolved, arguments)
            if span is not None:
                span.set_attribute("connector", resolved.connector or "-")
        except WardenError as e:
            self._event(
                EventType.call_denied,
                principal,
                refs,
                status="denied",
                data={"error_code": str(e.code), "reason": e.message},
            )
            _CALLS["denied"].inc()
            _observe(tool, refs.connector, "denied", started)
            raise
        try:
            if not resolved.auto_approve:
                approver, asker = _approver(resolved, principal)
                with APPROVALS_WAITING.track_inprogress():
                    await self.approvals.hold(
                        call_key=f"{principal.profile}:{idempotency_key}" if idempotency_key else call_id,
                        call_id=call_id,
                        tool=tool,
                        profile=principal.profile,
                        actor=principal.actor(),
                        arguments=arguments,
                        refs=refs,
                        ask=on_approval if asker is not None else None,
                        asker=asker,
                        still_allowed=lambda: self.still_allowed(principal.profile, tool),
                        approver=approver,
                        progress=progress,
                        abandon_on_cancel=not durable,
                        # a plain request's own timeout ends its wait; not a durable call's (its result
                        # is stored), nor one with an idempotency key (a retry with it joins the wait)
                        caller_wait_s=None if durable or idempotency_key else caller_wait_s,
                    )
                resolved = await self.recheck(principal.profile, tool, after="the approval")
                self.validate(resolved, arguments)
            if before_upstream is not None:
                await before_upstream()
            with UPSTREAM_IN_FLIGHT.track_inprogress():
                result = await self._call_with_consent(
                    resolved, principal, arguments, progress, on_consent, on_consented
                )
        except WardenError as e:
            latency = (time.perf_counter() - started) * 1000
            self._event(
                EventType.call_failed,
                principal,
                _acting_for(refs),
                status="error",
                latency_ms=latency,
                data={"error_code": str(e.code), "reason": e.message},
            )
            _CALLS["failed"].inc()
            _observe(tool, refs.connector, "failed", started)
            raise
        out = _result_to_contract(result, call_id)
        latency = (time.perf_counter() - started) * 1000
        _CALLS["error" if out.is_error else "ok"].inc()
        _observe(tool, resolved.connector, "error" if out.is_error else "ok", started)
        self._event(
            EventType.call_completed,
            principal,
            _acting_for(refs),
            status="error" if out.is_error else "ok",
            latency_ms=latency,
            data={
                "result": {
                    "content": out.content,
                    "structured_content": out.structured_content,
                    "is_error": out.is_error,
                }
            },
        )
        return out

    async def _call_upstream(
        self, tool: ResolvedTool, principal: Principal, arguments: dict[str, Any], progress: Any = None
    ) -> types.CallToolResult:
        user = principal.user
        self.breakers.check(tool.connector)
        cred = await self.credential(tool.connector, user, jwe=principal.jwe)
        _same_connector(tool, cred)
        if cred.subject and not user:  # jwt_passthrough: the site's verified user is who it is for
            _ACTING_FOR.set(cred.subject)
        try:
            try:
                result = await self.pool.call_tool(cred, user, tool.upstream_name, arguments, progress)
            except UpstreamUnauthorized as e:
                if (scopes := insufficient_scope(e)) is not None:
                    # step-up: connectors answers with a consent for the union of scopes (a
                    # per-user connection: `consent_required` + URL, which `_call_with_consent`
                    # shows and resumes after) or `reauth_required` for the organization's
                    await self.step_up(tool.connector, principal, scopes, cred)
                # the credential may have been rotated or revoked: one fresh credential, one retry
                cred = await self.credential(tool.connector, user, force=True, jwe=principal.jwe)
                _same_connector(tool, cred)
                await self.pool.close_credential(cred, user)  # this user's session only
                result = await self.pool.call_tool(cred, user, tool.upstream_name, arguments, progress)
        except UpstreamUnauthorized:
            UPSTREAM_ERRORS.labels(connector_label(tool.connector), "unauthorized").inc()
            raise
        except UpstreamResultTooLarge:
            raise  # the upstream is up: it answered (the breaker does not count it)
        except UpstreamError:
            UPSTREAM_ERRORS.labels(connector_label(tool.connector), "error").inc()
            self.breakers.failure(tool.connector)
            raise
        self.breakers.success(tool.connector)
        return result

    # -- discovery for the registry ------------------------------------------------------
    async def list_upstream(self, req: ListUpstreamTools) -> UpstreamTools:
        cred = await self.credential(req.connector, req.user, purpose="discovery", jwe=req.jwe)
        # page through the upstream until `page_size` tools (all of them when it is not set)
        tools: list[Any] = []
        next_cursor = req.cursor
        while True:
            page, next_cursor = await self.pool.list_tools_page(cred, req.user, next_cursor)
            tools.extend(page)
            if not next_cursor or (req.page_size is not None and len(tools) >= req.page_size):
                break
        return UpstreamTools(
            connector_id=cred.connector_id,
            next_cursor=next_cursor,
            tools=[_upstream_tool(t) for t in tools],
        )


def _upstream_tool(t: Any) -> UpstreamTool:
    """An upstream's tool as the registry keeps it: everything it declared an agent may see."""
    return UpstreamTool(
        name=t.name,
        description=t.description,
        input_schema=t.input_schema,
        annotations=t.annotations.model_dump(by_alias=True, exclude_none=True) if t.annotations else None,
        title=t.title,
        output_schema=t.output_schema,
        icons=[i.model_dump(by_alias=True, mode="json", exclude_none=True) for i in t.icons] if t.icons else None,
        meta=dict(t.meta) if t.meta else None,
    )


def _same_connector(tool: ResolvedTool, cred: Credential) -> None:
    """Fail closed when the tool was registered against another connector than the one that
    has its name now (removed and created again, perhaps at another server). A tool
    registered before ids were recorded has none: the registry records it on its next refresh."""
    if tool.connector_id is not None and cred.connector_id != tool.connector_id:
        raise ConnectorReplaced(
            f"tool {tool.name} was registered against an earlier connector named {tool.connector}, which was "
            f"removed; an admin must discover and register the tools of the connector {tool.connector} there is now"
        )


def _approver(tool: ResolvedTool, principal: Principal) -> tuple[str, Actor | None]:
    """Who may decide this held call, and whom the calling client's form may record as the
    decider (None: nobody at the client is asked; an admin decides). `admin` (the default for
    write tools): nobody at the client. `user` (the default for read tools): the end user, only
    when the caller is signed in as that user (a JWT caller); an agent key, even one acting for
    a user, is unattended and cannot answer for them. `any`: whoever is at the client, recorded
    as who they are (the agent key's prefix, or the user)."""
    approver = tool.approver or ("admin" if tool.operation == "write" else "user")
    if approver == "any":
        return approver, principal.actor()
    if approver == "user" and principal.kind == "user" and principal.user:
        return approver, Actor(kind="user", id=principal.user)
    return approver, None


def _observe(tool: str, connector: str | None, outcome: str, started: float) -> None:
    """The call's latency series and its one log line (names and outcome only: never arguments)."""
    took = time.perf_counter() - started
    CALL_DURATION.labels(tool_label(tool), connector_label(connector), outcome).observe(took)
    log.info("tool call %s (connector %s): %s in %.1f ms", tool[:200], connector or "-", outcome, took * 1000)


def _json_size(value: Any) -> int:
    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError:  # an integer past 64 bits: the standard library writes it
        return len(json.dumps(value, default=str))


def _no_remote_refs(uri: str) -> Any:
    raise ValueError(f"remote $ref {uri[:100]} is not fetched")


def _fast_validator(schema: dict[str, Any]) -> Callable[[Any], bool] | None:
    """jsonschema-rs's `is_valid` for this schema (about 40 times cheaper than walking it in
    Python), or None when it cannot build one; never fetches a remote `$ref`, and, like
    python-jsonschema by default, treats `format` as an annotation."""
    try:
        return jsonschema_rs.validator_for(  # type: ignore[no-any-return]
            schema, retriever=_no_remote_refs, validate_formats=False
        ).is_valid
    except Exception:  # noqa: BLE001 - any schema it cannot take is validated in Python only
        return None


def _short(err: ValidationError) -> str:
    msg = err.message
    # never echo long argument values back
    return msg if len(msg) <= 200 else msg[:200] + "…"
