"""The MCP endpoint agents connect to (streamable HTTP at /mcp).

An ASGI guard authenticates every request with an agent API key before the MCP
machinery sees it (401 + Warden's RFC 9728 metadata otherwise) and puts the
principal in the request scope; the tool handlers read it from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import mcp_types as types
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.types import Receive, Scope, Send
from warden_common.contracts import ErrorCode, ToolView
from warden_common.errors import WardenError
from warden_common.tracing import begin_call

from warden_proxy.agents import AgentKeys, Principal
from warden_proxy.approvals import AskApproval
from warden_proxy.consent_prompt import (
    CONSENT_INPUT,
    ModernConsent,
    consent_input_required,
    consent_message,
    consent_text,
    declares_url_elicitation,
)
from warden_proxy.errors import InvalidArguments
from warden_proxy.federation import Federation
from warden_proxy.listing import ListWatch, Unlocks, as_mcp_tool
from warden_proxy.mcp_fast import FastPath
from warden_proxy.resumable import EventBuffer, SessionManager
from warden_proxy.rfc9728 import metadata_url
from warden_proxy.service import CallPipeline

__all__ = ["McpEndpoint"]

log = logging.getLogger(__name__)
_SCOPE_KEY = "warden.principal"
TOOL_SEARCH = "tool_search"
_MAX_CONTEXTS = 10_000
_MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)
# tool_search's limits, as its input schema (the registry's) declares them
SEARCH_QUERY_MAX = 1000
SEARCH_K_MAX = 20

# Codes that mean "this tool does not exist for you": a JSON-RPC error, like an unknown tool.
_REFUSED = {ErrorCode.forbidden, ErrorCode.not_found}


def _principal(ctx: ServerRequestContext[Any, Any]) -> Principal:
    req = ctx.request
    scope = getattr(req, "scope", None) or {}
    p = scope.get(_SCOPE_KEY)
    if not isinstance(p, Principal):
        raise MCPError(types.INVALID_REQUEST, "not authenticated")
    return p


class _Server(Server[Any]):
    """The SDK's server, advertising `tools.listChanged` to handshake-era sessions: they are
    told when their visible list changes (`ListWatch`)."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True), experimental_capabilities, extensions
        )


class McpEndpoint:
    def __init__(
        self,
        pipeline: CallPipeline,
        keys: AgentKeys,
        *,
        resource_url: str,
        allowed_hosts: list[str],
        unlocks: Unlocks,
        retry_ms: int = 3000,
    ) -> None:
        self.pipeline = pipeline
        self.keys = keys
        self.resource_url = resource_url
        self.metadata_url = metadata_url(resource_url)
        self.unlocks = unlocks
        self.watch = ListWatch()
        pipeline.registry_listeners.append(self.watch.poke)
        self.server: Server[Any] = _Server(
            "warden",
            version="0.1.0",
            instructions="Warden: governed access to your organization's MCP tools.",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        # resources, prompts, completion and logging from the profile's connectors; what an
        # upstream asks during a tool call (sampling, elicitation, logs) goes to the caller
        self.federation = Federation(pipeline, principal_of=_principal, client_key=_client_context)
        self.federation.install(self.server)
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=bool(allowed_hosts),
            allowed_hosts=allowed_hosts,
            allowed_origins=[f"http://{h}" for h in allowed_hosts] + [f"https://{h}" for h in allowed_hosts],
        )
        # resumable streams: a bounded in-memory event store (per replica), a priming event
        # and `retry:` on every SSE stream of a 2025-11-25+ session (resumable.py)
        self.events = EventBuffer()
        self.manager = SessionManager(self.server, events=self.events, retry_ms=retry_ms, security_settings=security)
        # stateless tools/call without the SDK's per-request machinery; the rest goes to the SDK
        self._fast = FastPath(
            pipeline,
            security,
            self.server.server_info_stamp,
            _SCOPE_KEY,
            max_body=self.manager.max_request_body_size,
            reserved_tools=frozenset({TOOL_SEARCH}),
            log_levels=self.federation.levels,
        )
        self._mcp_app = StreamableHTTPASGIApp(self.manager)
        # legacy HTTP+SSE transport (2024-11-05 clients): GET /sse, POST /sse/messages/
        self.sse = SseServerTransport("/messages/", security_settings=security)

    async def listing(self, p: Principal, client: str, *, fresh: bool = False) -> list[types.Tool]:
        """What tools/list shows this client: the profile's listed tools, then the deferred
        ones it found through tool_search (on any replica) that it may still use."""
        tools = list(await self.pipeline.visible_tools(p.profile, fresh=fresh))
        unlocked = await self.unlocks.of(client, _owner(p), p.profile)
        have = {t.name for t in tools}
        for name in sorted(unlocked - have):
            try:
                r = await (self.pipeline.resolve_fresh if fresh else self.pipeline.resolve)(p.profile, name)
            except WardenError:
                continue  # revoked since it was found: stays invisible
            tools.append(r.view or ToolView(name=r.name, description=r.description, input_schema=r.input_schema))
        return [as_mcp_tool(t) for t in tools]

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        p = _principal(ctx)
        client = _client_context(ctx, p)
        try:
            tools = await self.listing(p, client)
        except WardenError as e:
            raise MCPError(types.INTERNAL_ERROR, f"could not list tools: {e.message}") from None
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:  # a session that can be told of changes

            async def again(fresh: bool) -> list[types.Tool]:
                return await self.listing(p, client, fresh=fresh)

            self.watch.seen(ctx.session, again, tools)
        return types.ListToolsResult(tools=tools)

    async def _tool_search(
        self, ctx: ServerRequestContext[Any, Any], p: Principal, args: dict[str, Any]
    ) -> types.CallToolResult:
        query = args.get("query")
        k = args.get("k", 5)
        if not isinstance(query, str) or not query.strip() or len(query) > SEARCH_QUERY_MAX:
            raise MCPError(
                types.INVALID_PARAMS,
                f"invalid argument query: a non-empty string of at most {SEARCH_QUERY_MAX} characters is required",
                data={"field": "query"},
            )
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= SEARCH_K_MAX:
            raise MCPError(
                types.INVALID_PARAMS,
                f"invalid argument k: an integer from 1 to {SEARCH_K_MAX} is required",
                data={"field": "k"},
            )
        extra = sorted(set(args) - {"query", "k"})
        if extra:
            raise MCPError(
                types.INVALID_PARAMS,
                f"invalid argument {extra[0]}: tool_search takes only query and k",
                data={"field": extra[0]},
            )
        found = await self.pipeline.search(p, query, k)
        names = {t.name for t in found}
        if names:
            try:
                new = await self.unlocks.add(_client_context(ctx, p), _owner(p), p.profile, names)
            except (asyncpg.PostgresError, OSError) as e:
                raise MCPError(types.INTERNAL_ERROR, "tool_search could not record what it found; try again") from e
            if new:
                with contextlib.suppress(Exception):
                    await ctx.session.send_tool_list_changed()
        payload = [{"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in found]
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps({"tools": payload}))],
            structured_content={"tools": payload},
        )

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        p = _principal(ctx)
        # one trace per call (the caller's, when it sent one), followed across all four services
        req = getattr(ctx, "request", None)
        begin_call(req.headers.get("traceparent") if req is not None and hasattr(req, "headers") else None)
        if params.name == TOOL_SEARCH:
            return await self._tool_search(ctx, p, dict(params.arguments or {}))
        progress = _progress_forwarder(ctx)
        modern: ModernConsent | None = None
        if ctx.protocol_version in _MODERN:  # 2026-07-28: no server-to-client requests, input_required
            answers = params.input_responses or {}
            modern = ModernConsent(ctx.session.client_capabilities, answers.get(CONSENT_INPUT), progress)
            on_consent: Callable[[str, str], Awaitable[bool]] = modern
            on_consented = None
        else:
            session_prompt = _SessionConsent(ctx, progress, self.pipeline.consent_wait_s)
            on_consent, on_consented = session_prompt.prompt, session_prompt.complete
        try:
            r = await self.pipeline.call(
                p,
                params.name,
                dict(params.arguments or {}),
                progress=progress,
                on_consent=on_consent,
                on_consented=on_consented,
                on_approval=_approval_prompt(ctx),
            )
        except InvalidArguments as e:
            raise MCPError(types.INVALID_PARAMS, e.message, data=e.details) from None
        except WardenError as e:
            if e.code in _REFUSED:
                raise MCPError(types.INVALID_PARAMS, f"unknown tool: {params.name}") from None
            if modern is not None and modern.asked is not None and e.code == ErrorCode.consent_required:
                return consent_input_required(*modern.asked)
            return types.CallToolResult(content=[types.TextContent(type="text", text=consent_text(e))], is_error=True)
        return types.CallToolResult.model_validate(
            {"content": r.content, "structuredContent": r.structured_content, "isError": r.is_error}
        )

    # -- ASGI --------------------------------------------------------------------------
    async def _authenticate(self, scope: Scope, send: Send) -> bool:
        # the two headers it needs (the last of each, as a dict of them all would keep), without
        # decoding every header of every request
        authorization = jwe = None
        for k, v in scope.get("headers", []):
            name = k.lower()
            if name == b"authorization":
                authorization = v.decode("latin-1")
            elif name == b"x-warden-jwe":
                jwe = v.decode("latin-1")
        try:
            principal = await self.keys.authenticate(authorization)
            scope[_SCOPE_KEY] = principal.with_jwe(jwe)
            # the SDK binds a session (and resuming its streams) to the credential that opened it:
            # who the caller is, never the secret itself
            scope["user"] = AuthenticatedUser(
                AccessToken(
                    token="",
                    client_id=f"{principal.kind}:{principal.id}",
                    scopes=[],
                    subject=f"{principal.profile}|{principal.user or ''}",
                )
            )
        except WardenError as e:
            await self._unauthorized(send, e.message, presented=bool(authorization))
            return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Streamable HTTP at /mcp."""
        if scope["type"] != "http":
            await self._mcp_app(scope, receive, send)
            return
        if await self._authenticate(scope, send):
            rest = await self._fast(scope, receive, send)  # None: answered
            if rest is not None:
                await self._mcp_app(scope, rest, send)

    async def sse_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Legacy HTTP+SSE at /sse (GET opens the stream, POST /sse/messages/ sends)."""
        if scope["type"] != "http" or not await self._authenticate(scope, send):
            return
        path = scope.get("path", "")
        if path.rstrip("/").endswith("/messages"):
            await self.sse.handle_post_message(scope, receive, send)
            return
        # the message endpoint the client is told about is root_path + "/messages/": make it /sse/messages/
        # whether the stream was opened at /sse (exact route) or /sse/ (the mount)
        scope = {**scope, "root_path": "/sse"}
        async with self.sse.connect_sse(scope, receive, send) as (read, write):
            await self.server.run(read, write, self.server.create_initialization_options())

    async def _unauthorized(self, send: Send, message: str, *, presented: bool) -> None:
        # RFC 6750 §3.1: no error code when the request carried no credentials at all
        challenge = f'Bearer resource_metadata="{self.metadata_url}"'
        if presented:
            challenge = f'Bearer error="invalid_token", resource_metadata="{self.metadata_url}"'
        body = json.dumps(
            {"error": "invalid_token" if presented else "unauthorized", "error_description": message}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", challenge.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _owner(p: Principal) -> str:
    return f"{p.kind}:{p.id}"


def _client_context(ctx: ServerRequestContext[Any, Any], p: Principal) -> str:
    headers = getattr(ctx.request, "headers", None)
    sid = headers.get("mcp-session-id") if headers is not None else None
    return f"session:{sid}" if sid else f"key:{p.kind}:{p.id}"


class _SessionConsent:
    """Show a consent URL to a handshake-era session: URL-mode elicitation when the client
    supports it — on the call's own POST stream (the spec's SHOULD for requests related to a
    request), on the GET stream when that fails — else a progress message when the caller
    asked for progress; then the call waits for the connection, and `complete` tells the
    client the elicitation is done. A client with neither gets the URL in the result at once
    (returns False), and so does one that never answers the elicitation within the wait."""

    def __init__(self, ctx: ServerRequestContext[Any, Any], progress: Any, wait_s: float) -> None:
        self.ctx = ctx
        self.progress = progress
        self.wait_s = wait_s
        self.elicitation_id: str | None = None

    async def prompt(self, url: str, connector: str) -> bool:
        message = consent_message(connector, url)
        session = self.ctx.session
        if declares_url_elicitation(session.client_capabilities):
            elicitation_id = uuid.uuid4().hex
            for related in (self.ctx.request_id, None):  # this call's stream, then the GET stream
                try:
                    async with asyncio.timeout(self.wait_s):
                        result = await session.elicit_url(
                            message, url, elicitation_id=elicitation_id, related_request_id=related
                        )
                except TimeoutError:
                    log.info("the client did not answer the consent elicitation within %.0f s", self.wait_s)
                    return False
                except Exception:  # noqa: BLE001 - no back-channel here: try the next, then fall back
                    log.debug("URL elicitation failed (related=%s)", related is not None, exc_info=True)
                    continue
                self.elicitation_id = elicitation_id
                return result.action == "accept"
        if self.progress is not None:
            await self.progress(0, None, message)
            return True
        return False

    async def complete(self, connector: str) -> None:
        """The connection landed: `notifications/elicitation/complete` for the URL shown."""
        if self.elicitation_id is None:
            return
        elicitation_id, self.elicitation_id = self.elicitation_id, None
        with contextlib.suppress(Exception):
            await self.ctx.session.send_elicit_complete(elicitation_id, related_request_id=self.ctx.request_id)


_APPROVAL_FORM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "approve": {"type": "boolean", "title": "Allow this call", "default": False},
        "reason": {"type": "string", "title": "Reason (optional)", "maxLength": 500},
    },
    "required": ["approve"],
}


def _approval_prompt(ctx: ServerRequestContext[Any, Any]) -> AskApproval | None:
    """When the client can show forms (elicitation, form mode), a held call asks its user.
    Accept with approve=true approves, approve=false or decline rejects, cancel leaves the
    decision to an admin (or the timeout)."""
    caps = ctx.session.client_capabilities
    elicitation = getattr(caps, "elicitation", None) if caps is not None else None
    if elicitation is None:
        return None
    form, url = getattr(elicitation, "form", None), getattr(elicitation, "url", None)
    if form is None and url is not None:  # URL mode only: no forms
        return None

    async def ask(tool: str, arguments: dict[str, Any]) -> tuple[bool, str | None] | None:
        shown = json.dumps(arguments, ensure_ascii=False)
        shown = shown if len(shown) <= 500 else shown[:500] + "…"
        result = await ctx.session.elicit_form(
            f"Allow the agent to call {tool}?\nArguments: {shown}",
            requested_schema=_APPROVAL_FORM,
            related_request_id=ctx.request_id,  # on the call's own stream
        )
        if result.action == "cancel":
            return None
        if result.action == "decline":
            return False, "declined by the user"
        content = result.content or {}
        reason = content.get("reason")
        return bool(content.get("approve")), str(reason)[:500] if reason else None

    return ask


def _progress_forwarder(
    ctx: ServerRequestContext[Any, Any],
) -> Callable[[float, float | None, str | None], Awaitable[None]] | None:
    """Stream the upstream's progress notifications to the caller, if it asked for progress."""
    meta: Any = ctx.meta or {}  # a TypedDict in mcp 2.x
    token = meta.get("progress_token", meta.get("progressToken")) if isinstance(meta, dict) else None
    if token is None:
        return None

    async def forward(progress: float, total: float | None, message: str | None) -> None:
        with contextlib.suppress(Exception):
            # on the call's own stream: a 2026-07-28 client (or a session without a GET stream)
            # has no other
            await ctx.session.send_progress_notification(
                token, progress, total, message, related_request_id=str(ctx.request_id)
            )

    return forward
