"""A lean path through /mcp for the hot request: a stateless (2026-07-28) `tools/call`.

The SDK's modern entry runs, per request, a Starlette request, the inbound ladder, a
`tools/list` of the caller's catalogue (to check `Mcp-Param-*` headers), a per-request
server kernel with its middleware chain, pydantic validation of params and result, and
a sibling task group for the SSE deferral: most of the proxy's CPU on the MCP path.
This answers the same request directly with the same checks and the same wire result:

- only a POST that would pass the SDK's own checks is taken: Content-Type, Host and
  Origin (DNS rebinding), Accept, body size, a single JSON-RPC request (no batch, no
  notification), no duplicated routing header, and the SDK's own ladder
  (`classify_inbound_request`: envelope `_meta`, `MCP-Protocol-Version` / `Mcp-Method`
  / `Mcp-Name` headers matching the body, a served version);
- only `tools/call` of a proxied tool without a progress token, without `Mcp-Param-*`
  headers and whose schema declares none (`x-mcp-header`), and not the retry of an
  `input_required` round; a consent URL is asked through `input_required` when the client
  declares URL elicitation (`consent_prompt`), else it is in the result;
- everything else — handshake-era sessions, `server/discover`, `tools/list`,
  `tool_search`, progress, every rejection — goes to the SDK unchanged, with the body
  replayed, so its answers and errors stay the SDK's.

The answer is `application/json` when the call ends within the SDK's SSE deferral
window (15 s) without anything to relay, else `text/event-stream`, as the SDK does: the
upstream's log messages for the call go to the caller on that stream (through the same
`AgentRelay` as the SDK path, with the levels the caller set), its sampling and elicitation
requests are refused as on the SDK's stateless path (no back-channel), and keep-alive
comments hold a slow call open.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Coroutine
from functools import cached_property
from typing import TYPE_CHECKING, Any

import mcp_types as types
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, TransportSecuritySettings
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundModernRoute,
    classify_inbound_request,
    find_duplicated_routing_header,
)
from mcp_types import SERVER_INFO_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.types import Message, Receive, Scope, Send
from warden_common.contracts import ErrorCode
from warden_common.errors import WardenError
from warden_common.tracing import begin_call

from warden_proxy.agents import Principal
from warden_proxy.consent_prompt import ModernConsent, consent_input_required, consent_text
from warden_proxy.errors import InvalidArguments
from warden_proxy.lean import RELAY
from warden_proxy.relay import AgentRelay, LogLevels

if TYPE_CHECKING:
    from warden_proxy.service import CallPipeline

__all__ = ["FastPath"]

log = logging.getLogger(__name__)

_SSE_DEFERRAL_S = 15.0  # the SDK's _SSE_PING_INTERVAL: JSON if the answer comes sooner
_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),
]
_MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)
_PV_HEADER = MCP_PROTOCOL_VERSION_HEADER.encode()
_REFUSED = {ErrorCode.forbidden, ErrorCode.not_found}


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """`receive` for the SDK after we read (part of) the body: the bytes read, then the rest."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": more}]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed


def _accepts(accept: str) -> tuple[bool, bool]:
    """(json, sse) as the SDK's check_accept_headers reads an Accept header."""
    types_ = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    wild = "*/*" in types_
    return (
        wild or "application/json" in types_ or "application/*" in types_,
        wild or "text/event-stream" in types_ or "text/*" in types_,
    )


def _host_ok(value: str | None, allowed: list[str]) -> bool:
    if not value:
        return False
    return value in allowed or any(a.endswith(":*") and value.startswith(a[:-2] + ":") for a in allowed)


class _Exchange:
    """The response to one request: JSON at the end, or an SSE stream once something is sent early."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.streaming = False
        self._lock = asyncio.Lock()

    async def stream(self, chunk: bytes) -> None:
        async with self._lock:  # the start line before any chunk, chunks whole
            if not self.streaming:
                self.streaming = True
                await self.send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            await self.send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        msg = {"jsonrpc": "2.0", "method": method, "params": params}
        await self.stream(b"event: message\r\ndata: " + _dumps(msg) + b"\r\n\r\n")


class _Session:
    """What `AgentRelay` needs of a session, for a stateless request: the capabilities from
    its envelope, notifications on its response stream, and no back-channel."""

    def __init__(self, exchange: _Exchange, capabilities: Any) -> None:
        self._exchange = exchange
        self._raw_caps = capabilities

    @cached_property
    def client_capabilities(self) -> types.ClientCapabilities | None:
        try:
            return types.ClientCapabilities.model_validate(self._raw_caps)
        except ValueError:
            return None

    async def send_log_message(self, level: str, data: Any, logger: str | None = None, **_: Any) -> None:
        params: dict[str, Any] = {"level": level, "data": data}
        if logger is not None:
            params["logger"] = logger
        await self._exchange.notify("notifications/message", params)

    async def send_request(self, request: Any, *_: Any, **__: Any) -> Any:
        raise NoBackChannelError(getattr(request, "method", "request"))


class _Ctx:
    def __init__(self, request_id: Any, session: _Session) -> None:
        self.request_id = request_id
        self.session = session


class FastPath:
    def __init__(
        self,
        pipeline: CallPipeline,
        security: TransportSecuritySettings,
        server_info: dict[str, Any],
        principal_key: str,
        *,
        max_body: int = DEFAULT_MAX_REQUEST_BODY_SIZE,
        reserved_tools: frozenset[str] = frozenset(),
        log_levels: LogLevels | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.security = security
        self.server_info = server_info
        self.principal_key = principal_key
        self.max_body = max_body
        self.reserved = reserved_tools
        self.levels = log_levels
        self._declares_headers: dict[int, tuple[Any, bool]] = {}

    # -- ASGI ------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Answer the request, or return the `receive` to hand it (unread) to the SDK."""
        if scope.get("method") != "POST":
            return receive
        raw = scope.get("headers") or []
        pv = next((v for k, v in raw if k == _PV_HEADER), None)
        if pv is None or pv.decode("latin-1") not in _MODERN:
            return receive  # handshake-era (sessions) and unknown versions: the SDK's
        headers: dict[str, str] = {}
        for k, v in raw:
            headers.setdefault(k.decode("latin-1"), v.decode("latin-1"))
        if not self._headers_ok(headers):
            return receive
        if find_duplicated_routing_header((k.decode("latin-1"), "") for k, _ in raw) is not None:
            return receive
        body, more = await self._read(receive)
        if more:
            return _replay(body, more, receive)
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return _replay(body, more, receive)
        call = self._tools_call(doc, headers)
        if call is None:
            return _replay(body, more, receive)
        principal = scope.get(self.principal_key)
        if not isinstance(principal, Principal):
            return _replay(body, more, receive)
        rid, capabilities, name, arguments = call
        # one trace per call (the caller's, when it sent one), across all four services: from
        # here, so the tool's look-up just below is in it too
        begin_call()
        if arguments and await self._schema_declares_headers(principal, name):
            return _replay(body, more, receive)
        exchange = _Exchange(send)
        context = contextvars.copy_context()
        if self.levels is not None:
            sid = headers.get("mcp-session-id")
            key = f"session:{sid}" if sid else f"key:{principal.kind}:{principal.id}"
            relay = AgentRelay(_Ctx(rid, _Session(exchange, capabilities)), self.levels, key)  # type: ignore[arg-type]
            context.run(RELAY.set, relay)
        await self._answer(exchange, context, self._run(principal, rid, name, arguments, capabilities))
        return None

    def _headers_ok(self, headers: dict[str, str]) -> bool:
        ctype = headers.get("content-type")
        if ctype is None or not ctype.lower().startswith("application/json"):
            return False
        if self.security.enable_dns_rebinding_protection and (
            not _host_ok(headers.get("host"), self.security.allowed_hosts)
            or (headers.get("origin") and not _host_ok(headers.get("origin"), self.security.allowed_origins))
        ):
            return False
        has_json, has_sse = _accepts(headers.get("accept", ""))
        if not (has_json and has_sse):
            return False
        return not any(k.startswith("mcp-param-") for k in headers)

    async def _read(self, receive: Receive) -> tuple[bytes, bool]:
        """The body; (what was read, True) when it is over the limit or the client left."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), True
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_body:
                return b"".join(chunks), True
            if not message.get("more_body", False):
                return b"".join(chunks), False

    def _tools_call(self, doc: Any, headers: dict[str, str]) -> tuple[Any, str, str, dict[str, Any]] | None:
        if not isinstance(doc, dict) or doc.get("jsonrpc") != "2.0" or doc.get("method") != "tools/call":
            return None
        rid = doc.get("id")
        if isinstance(rid, bool) or not isinstance(rid, str | int):
            return None
        if set(doc) - {"jsonrpc", "id", "method", "params"}:
            return None
        params = doc.get("params")
        if not isinstance(params, dict):
            return None
        name = params.get("name")
        arguments = params.get("arguments")
        meta = params.get("_meta")
        if not isinstance(name, str) or name in self.reserved:
            return None
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict) or not isinstance(meta, dict) or "progressToken" in meta:
            return None
        if params.get("inputResponses") is not None or params.get("requestState") is not None:
            return None  # the retry of an input_required round (a consent): the SDK's path waits

        route = classify_inbound_request(doc, headers=headers)
        if not isinstance(route, InboundModernRoute):
            return None
        return rid, route.client_capabilities, name, arguments

    async def _schema_declares_headers(self, principal: Principal, name: str) -> bool:
        """Whether the tool's schema maps arguments to `Mcp-Param-*` headers (the SDK checks those)."""
        try:
            schema = (await self.pipeline.resolve(principal.profile, name)).input_schema
        except WardenError:
            return False  # the call itself is refused, with its audit events
        hit = self._declares_headers.get(id(schema))
        if hit is None or hit[0] is not schema:
            hit = (schema, '"x-mcp-header"' in json.dumps(schema))
            self._declares_headers[id(schema)] = hit
        return hit[1]

    # -- the call ----------------------------------------------------------------------
    async def _run(
        self, p: Principal, rid: Any, name: str, arguments: dict[str, Any], capabilities: Any = None
    ) -> dict[str, Any]:
        consent = ModernConsent(capabilities, None)  # no progress here: asks through input_required
        try:
            r = await self.pipeline.call(p, name, arguments, on_consent=consent)
        except InvalidArguments as e:
            return _error(rid, types.INVALID_PARAMS, e.message, e.details)
        except WardenError as e:
            if e.code in _REFUSED:
                return _error(rid, types.INVALID_PARAMS, f"unknown tool: {name}")
            if consent.asked is not None and e.code == ErrorCode.consent_required:
                asked = consent_input_required(*consent.asked).model_dump(by_alias=True, mode="json", exclude_none=True)
                asked["_meta"] = {SERVER_INFO_META_KEY: self.server_info}
                return {"jsonrpc": "2.0", "id": rid, "result": asked}
            result: dict[str, Any] = {"content": [{"type": "text", "text": consent_text(e)}], "isError": True}
        except Exception:  # noqa: BLE001 - the SDK's boundary too: log it, answer a generic error
            log.exception("tools/call %s failed", name)
            return _error(rid, types.INTERNAL_ERROR, "Internal server error")
        else:
            result = {"content": r.content}
            if r.structured_content is not None:
                result["structuredContent"] = r.structured_content
            result["isError"] = r.is_error
        result["resultType"] = "complete"
        result["_meta"] = {SERVER_INFO_META_KEY: self.server_info}
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    async def _answer(
        self, exchange: _Exchange, context: contextvars.Context, work: Coroutine[Any, Any, dict[str, Any]]
    ) -> None:
        task = asyncio.get_running_loop().create_task(work, context=context)
        try:
            done, _ = await asyncio.wait((task,), timeout=_SSE_DEFERRAL_S)
            while not done:  # a slow call: keep the stream open until it ends
                await exchange.stream(b": ping\r\n\r\n")
                done, _ = await asyncio.wait((task,), timeout=_SSE_DEFERRAL_S)
        except BaseException:
            task.cancel()
            raise
        msg = task.result()
        if exchange.streaming:
            event = b"event: message\r\ndata: " + _dumps(msg) + b"\r\n\r\n"
            await exchange.send({"type": "http.response.body", "body": event, "more_body": False})
            return
        err = msg.get("error")
        status = ERROR_CODE_HTTP_STATUS.get(err["code"], 200) if err else 200
        body = _dumps(msg)
        headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        await exchange.send({"type": "http.response.start", "status": status, "headers": headers})
        await exchange.send({"type": "http.response.body", "body": body})


def _error(rid: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": rid, "error": err}
